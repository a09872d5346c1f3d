#!/usr/bin/env bash
# make demo: DIVDS end to end on private daemons.
#
# It starts its own rsyslogd, docker-registry, the divds plugin and two
# dockerds (one gated by divds; one ungated, standing for a colleague's
# build host that pushes to the shared registry), all on private sockets,
# ports and directories under one temporary directory. It never touches the
# host's Docker daemon, and stops only what it started, by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/divds-authz
work=$(mktemp -d /tmp/divds-demo-XXXXXX)
pids=()
spec=""
made_plugin_dir=""

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }

cleanup() {
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  done
  [ -n "$spec" ] && rm -f "$spec"
  [ -n "$made_plugin_dir" ] && rmdir /etc/docker/plugins /etc/docker 2>/dev/null
  # Unmount what a daemon may have left under our directory, deepest first.
  awk -v d="$work/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

start() { # start NAME LOG CMD...: run in the background, remember the PID
  local name=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!)
}

wait_for() { # wait_for WHAT SECONDS CMD...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timed out waiting for $what" >&2
  return 1
}

mkdir -p "$work/state" "$work/etc" "$work/syslog/work"

bold "0. Setup: database, rsyslog, registry, the divds plugin, two private dockerds"
if timeout 5 bash -c 'exec 3<>/dev/tcp/secdb.alpinelinux.org/443' 2>/dev/null; then
  say "the network is there: fetching the Alpine and Ubuntu trackers (db update)"
  if ! timeout 240 "$bin" --state-dir "$work/state" --log-level warn db update --updaters alpine,ubuntu --no-sample-fallback >"$work/db-update.log" 2>&1; then
    say "db update did not finish; using the shipped SAMPLE database instead"
    "$bin" --state-dir "$work/state" db update --sample >/dev/null
  fi
else
  say "no network: using the SAMPLE database shipped in the binary (real feeds, old on purpose)"
  "$bin" --state-dir "$work/state" db update --sample >/dev/null
fi
"$bin" --state-dir "$work/state" db status | sed -n '1,5p' | sed 's/^/   /'

cat >"$work/syslog/rsyslog.conf" <<EOF
global(workDirectory="$work/syslog/work")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$work/syslog/log.sock" CreatePath="on")
template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="$work/syslog/audit.log" template="raw")
EOF
start rsyslogd "$work/syslog/rsyslogd.log" rsyslogd -n -f "$work/syslog/rsyslog.conf" -i "$work/syslog/rsyslogd.pid"
wait_for rsyslogd 20 test -S "$work/syslog/log.sock"

port=$(( 20000 + RANDOM % 20000 ))
reg=127.0.0.1:$port
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $reg}
EOF
start docker-registry "$work/registry.log" docker-registry serve "$work/registry.yml"
wait_for "the registry" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"

"$bin" policy default >"$work/etc/policy.yaml"
gated=$work/gated
start divds-authz "$work/plugin.log" "$bin" --state-dir "$work/state" --policy "$work/etc/policy.yaml" \
  serve --socket "$work/divds.sock" --docker-host "unix://$gated/docker.sock" --no-update \
  --syslog "unixgram://$work/syslog/log.sock" --plugin-name "divds-demo-$$"
wait_for "the plugin" 20 test -S "$work/divds.sock"
spec=/etc/docker/plugins/divds-demo-$$.spec
[ -d /etc/docker/plugins ] || { made_plugin_dir=1; mkdir -p /etc/docker/plugins; }
echo "unix://$work/divds.sock" >"$spec"

dockerd_start() { # dockerd_start DIR [ARGS...]
  local dir=$1; shift
  mkdir -p "$dir"
  start dockerd "$dir/dockerd.log" dockerd --host "unix://$dir/docker.sock" --data-root "$dir/data" \
    --exec-root "$dir/x" --pidfile "$dir/docker.pid" --bridge none --iptables=false --ip6tables=false \
    --ip-masq=false --storage-driver overlay2 --insecure-registry 127.0.0.0/8 \
    --containerd-namespace "divds-demo-$(basename "$dir")" --containerd-plugins-namespace "divds-demo-$(basename "$dir")-p" "$@"
  wait_for "dockerd at $dir" 60 docker -H "unix://$dir/docker.sock" version
}
dockerd_start "$gated" --authorization-plugin "divds-demo-$$"
builder=$work/builder
dockerd_start "$builder"
mkdir -p "$work/cli"
gd() { DOCKER_CONFIG=$work/cli DOCKER_CLI_HINTS=false docker -H "unix://$gated/docker.sock" "$@"; }
bd() { DOCKER_CONFIG=$work/cli DOCKER_CLI_HINTS=false docker -H "unix://$builder/docker.sock" "$@"; }
say "gated dockerd: unix://$gated/docker.sock (--authorization-plugin divds-demo-$$)"
say "registry: $reg; audit records: rsyslog at $work/syslog/log.sock"

tar -C "$root/demo/bionic-rootfs" -cf "$work/bionic.tar" .
gd import "$work/bionic.tar" demo/bionic-app:1.0 >/dev/null
gd import "$root/demo/alpine-minirootfs-3.7.3-x86_64.tar.gz" demo/alpine-app:1.0 >/dev/null
say "images: demo/bionic-app:1.0 (Ubuntu 18.04 packages of April 2018), demo/alpine-app:1.0 (Alpine 3.7.3)"

bold "1. The diagnosis: divds-authz scan demo/bionic-app:1.0"
# The CLI reads the plugin's database beside it (read-only).
set +e
"$bin" --state-dir "$work/state" --policy "$work/etc/policy.yaml" --log-level error scan \
  --docker-host "unix://$gated/docker.sock" demo/bionic-app:1.0 >"$work/scan.txt" 2>&1
rc=$?
set -e
sed -n '1,22p' "$work/scan.txt"
say "... ($(grep -c '^CVE-' "$work/scan.txt") findings)"
tail -n 1 "$work/scan.txt"
say "exit code $rc (0 allowed, 2 denied, 1 error)"

bold "2. A push of the vulnerable image is denied"
gd tag demo/bionic-app:1.0 "$reg/demo/bionic-app:1.0"
set +e
gd push "$reg/demo/bionic-app:1.0" 2>&1 | tail -n 2 | sed 's/^/   /'
say "docker push exit code: ${PIPESTATUS[0]}"
set -e

bold "3. The vulnerable image pulled from the registry is removed, then denied at run"
say "(a colleague's ungated build host pushes it to the shared registry)"
bd import "$work/bionic.tar" "$reg/team/bionic-app:1.0" >/dev/null
bd push "$reg/team/bionic-app:1.0" >/dev/null
set +e
gd pull "$reg/team/bionic-app:1.0" 2>&1 | grep -v '^$' | tail -n 2 | sed 's/^/   /'
say "docker pull exit code: ${PIPESTATUS[0]} (a streamed pull cannot be stopped once it has run;"
say "the plugin removed and quarantined the image right after it)"
if gd image inspect "$reg/team/bionic-app:1.0" >/dev/null 2>&1; then
  say "UNEXPECTED: the image is still present"
else
  say "docker images: $reg/team/bionic-app:1.0 is gone"
fi
gd run --rm --network none "$reg/team/bionic-app:1.0" /bin/true 2>&1 | grep -i denied | sed 's/^/   /'
say "docker run exit code: ${PIPESTATUS[0]}"
set -e

bold "4. A clean image pushes, pulls and runs"
gd tag demo/alpine-app:1.0 "$reg/demo/alpine-app:1.0"
gd push "$reg/demo/alpine-app:1.0" >/dev/null && say "docker push: done"
gd rmi "$reg/demo/alpine-app:1.0" >/dev/null
gd pull "$reg/demo/alpine-app:1.0" >/dev/null && say "docker pull: done"
gd run --rm --network none "$reg/demo/alpine-app:1.0" /bin/echo "   docker run: hello from a clean image"

bold "5. The audit records rsyslog received (RFC 5424, one per decision)"
for _ in $(seq 1 25); do [ "$(grep -c divds-authz "$work/syslog/audit.log" 2>/dev/null || echo 0)" -ge 7 ] && break; sleep 0.2; done
while read -r line; do
  hdr=${line%%\[divds@*}
  fields=$(grep -o '"action":"[^"]*"\|"image":"[^"]*"\|"decision":"[^"]*"\|"score":"[^"]*"\|"reason":"[^"]*"' <<<"$line" | tr '\n' ' ')
  printf '   %s\n      %s\n' "$hdr" "$fields"
done <"$work/syslog/audit.log"

bold "6. What the plugin reports about itself (divds-authz status)"
"$bin" status --socket "$work/divds.sock" | sed 's/^/   /'

bold "Done: everything the demo started is being stopped and removed"
