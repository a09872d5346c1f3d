#!/usr/bin/env bash
# make install: install DIVDS; idempotent. With DESTDIR set, only files are
# staged under it (for packaging and tests): no service is started and no
# Docker configuration is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DESTDIR:=}" "${PREFIX:=/usr/local}" "${UNITDIR:=/etc/systemd/system}" "${INSTALL_DB:=update}"
bindir=$DESTDIR$PREFIX/bin
docdir=$DESTDIR$PREFIX/share/doc/divds
unitdir=$DESTDIR$UNITDIR
etc=$DESTDIR/etc/divds
state=$DESTDIR/var/lib/divds

# install -C leaves identical files alone: a second install changes nothing.
install -C -D -m 0755 bin/divds-authz "$bindir/divds-authz"
install -C -D -m 0644 deploy/systemd/divds-authz.socket "$unitdir/divds-authz.socket"
install -C -D -m 0644 deploy/systemd/divds-authz.service "$unitdir/divds-authz.service"
install -C -D -m 0644 deploy/systemd/docker.service.d/divds.conf "$unitdir/docker.service.d/divds.conf"
for doc in README.md docs/*.md; do
  install -C -D -m 0644 "$doc" "$docdir/$(basename "$doc")"
done
install -d -m 0755 "$etc"
install -d -m 0700 "$state"
if [ -e "$etc/policy.yaml" ]; then
  echo "kept the existing policy $etc/policy.yaml"
else
  bin/divds-authz policy default > "$etc/policy.yaml.tmp"
  chmod 0644 "$etc/policy.yaml.tmp"
  mv "$etc/policy.yaml.tmp" "$etc/policy.yaml"
  echo "installed the default policy at $etc/policy.yaml"
fi
if [ -e "$state/vuln.db" ]; then
  echo "kept the existing vulnerability database in $state"
elif [ "$INSTALL_DB" = sample ]; then
  "$bindir/divds-authz" --state-dir "$state" db update --sample
else
  # db update falls back to the shipped sample when no updater can reach
  # its tracker and there is no database yet.
  "$bindir/divds-authz" --state-dir "$state" --policy "$etc/policy.yaml" db update || true
fi

if [ -n "$DESTDIR" ]; then
  echo "staged under $DESTDIR; on the host, enable with:"
  echo "  systemctl daemon-reload && systemctl enable --now divds-authz.socket divds-authz.service"
  echo "  divds-authz docker-config enable && systemctl restart docker"
  exit 0
fi
if [ ! -d /run/systemd/system ]; then
  cat <<MSG
systemd is not running here: start the plugin and configure Docker by hand:
  $PREFIX/bin/divds-authz serve &        # listens on /run/docker/plugins/divds.sock
  $PREFIX/bin/divds-authz docker-config enable
  then restart dockerd.
MSG
  exit 0
fi
# The safe order: the plugin answers before dockerd is told to use it.
systemctl daemon-reload
systemctl enable --now divds-authz.socket divds-authz.service
for _ in $(seq 1 30); do
  "$bindir/divds-authz" docker-config enable && break
  sleep 1
done
systemctl restart docker
echo "DIVDS is enforcing $etc/policy.yaml on this host's Docker"
