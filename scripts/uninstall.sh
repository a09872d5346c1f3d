#!/usr/bin/env bash
# make uninstall: remove what make install put in place; idempotent. An
# edited policy is kept (it is the admin's); the shipped default is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DESTDIR:=}" "${PREFIX:=/usr/local}" "${UNITDIR:=/etc/systemd/system}"
bindir=$DESTDIR$PREFIX/bin
docdir=$DESTDIR$PREFIX/share/doc/divds
unitdir=$DESTDIR$UNITDIR
etc=$DESTDIR/etc/divds
state=$DESTDIR/var/lib/divds

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  # The safe order: dockerd stops using the plugin before it goes.
  if [ -x "$bindir/divds-authz" ]; then
    "$bindir/divds-authz" docker-config disable && systemctl restart docker || true
  fi
  systemctl disable --now divds-authz.service divds-authz.socket 2>/dev/null || true
fi
rm -f "$bindir/divds-authz" "$unitdir/divds-authz.socket" "$unitdir/divds-authz.service" "$unitdir/docker.service.d/divds.conf"
rm -rf "$docdir" "$state"
if [ -e "$etc/policy.yaml" ]; then
  if bin/divds-authz policy default | cmp -s - "$etc/policy.yaml"; then
    rm -f "$etc/policy.yaml"
  else
    echo "kept your edited policy $etc/policy.yaml"
  fi
fi
rmdir "$etc" "$unitdir/docker.service.d" 2>/dev/null || true
if [ -n "$DESTDIR" ]; then
  # Staged trees: remove the directories install created, if now empty.
  find "$DESTDIR" -mindepth 1 -depth -type d -empty -delete 2>/dev/null || true
fi
[ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemctl daemon-reload || true
echo "DIVDS removed"
