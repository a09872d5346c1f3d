#!/usr/bin/env bash
# make bench: every DIVDS benchmark in one run, printed as a table beside
# its target (for this project's 2-core machine). Figures are measured,
# never asserted; ratios are taken within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/divds-authz
td=${DIVDS_TESTDATA:-testdata}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=()
row() { rows+=("$(printf '| %s | %s | %s |' "$1" "$2" "$3")"); }

echo "running benchmarks (a few minutes)..." >&2
gobench() { go test -run '^$' -bench "$1" -benchtime "${3:-1x}" "$2" 2>/dev/null | grep "^Benchmark" || true; }
metric() { grep -o "[0-9.]* $1" <<<"$2" | head -1 | cut -d' ' -f1; }

# Issue #3: the store.
t0=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/rss" "$bin" --state-dir "$work/db" db import "$td/bundles/ubuntu-bionic-oval-2021-08-31.jsonl.zst" >"$work/import.txt"
t1=$(date +%s.%N)
rate=$(grep -o '([0-9]* records/s)' "$work/import.txt" | tr -d '()')
row "import of the bionic bundle (186,661 records)" "$rate, peak RSS $(( $(cat "$work/rss") / 1024 )) MB" "≥ 50,000 records/s, ≤ 1 GiB"
row "database size after that import" "$(( $(stat -c %s "$work/db/vuln.db") / 1000000 )) MB" "≤ 80 MB"
out=$(gobench 'BenchmarkOpen$|BenchmarkLookupPerPackage' ./scanner/vulnstore 2000x)
row "read-only open" "$(awk '/BenchmarkOpen/ {printf "%.3f ms", $3/1e6}' <<<"$out")" "< 50 ms"
row "lookup per package" "$(awk '/BenchmarkLookupPerPackage/ {printf "%.1f µs", $3/1e3}' <<<"$out")" "< 50 µs"

# Issue #4: scanning.
for i in $(seq 1 21); do
  /usr/bin/time -f '%e %M' -a -o "$work/scan-times" "$bin" --state-dir "$work/db" --log-level error scan --no-cache --rootfs "$td/rootfs/ubuntu-18.04-bionic" -q >/dev/null || true
done
med=$(grep -E '^[0-9.]+ [0-9]+$' "$work/scan-times" | sort -n | awk '{t[NR]=$1; m[NR]=$2} END {printf "%d ms, peak RSS %d MB", t[int((NR+1)/2)]*1000, m[int((NR+1)/2)]/1024}')
row "scan --rootfs of the bionic rootfs, whole process: start, open the database, scan, match (median of 21)" "$med" "≤ 40 ms, ≤ 60 MB"
out=$(gobench 'BenchmarkScanRootfsInProcess' ./scanner 200x)
row "the same scan in process, DB already open" "$(awk '{printf "%.2f ms", $3/1e6}' <<<"$out")" "≤ 8 ms"
out=$(gobench 'BenchmarkLayers' ./test/bench)
row "5-layer, 105 MB image in the daemon: layer directories vs ImageSave" "$(metric direct-ms "$out") ms vs $(metric imagesave-ms "$out") ms: $(metric save/direct "$out")×" "≥ 100×"
row "docker-save archive (plain), per 100 MB" "$(metric archive-ms/100MB "$out") ms" "≤ 30 ms"
row "rescan after a DB update, layers cached" "$(metric rescan-ms "$out") ms, $(metric rescan-layers-read "$out") layers read" "no layer read"

# Issue #10: the image read at pull and the pull itself, per engine and
# store (Docker 29 built once per machine by scripts/engine.sh).
engine_bin=$(bash scripts/engine.sh)
for e in debian 29-overlay2 29-containerd; do
  out=$(DIVDS_E2E_ENGINE=$e DIVDS_ENGINE_BIN=$engine_bin gobench 'BenchmarkReadAtPull$' ./test/bench)
  if [ -z "$out" ]; then row "image read at pull on $e" "failed: run DIVDS_E2E_ENGINE=$e DIVDS_ENGINE_BIN=$engine_bin go test -run '^\$' -bench BenchmarkReadAtPull ./test/bench" "-"; continue; fi
  eval "read_$(tr -- '-' '_' <<<"$e")=$(metric 105MB-ms "$out")"
  row "image read at pull on $e: 10 MB vs 105 MB image (ImageSave of the 105 MB one)" "$(metric 10MB-ms "$out") ms vs $(metric 105MB-ms "$out") ms ($(metric 105MB-imagesave-ms "$out") ms)" "independent of size"
  out=$(DIVDS_E2E_ENGINE=$e DIVDS_ENGINE_BIN=$engine_bin gobench 'BenchmarkPull$' ./test/bench)
  row "docker pull of the 105 MB image on $e: with divds vs without a plugin (median of 3)" "$(metric divds-pull-ms "$out") ms vs $(metric bare-pull-ms "$out") ms: ratio $(metric divds/bare "$out")" "≤ 1.1"
done
if [ -n "${read_29_containerd:-}" ] && [ -n "${read_29_overlay2:-}" ]; then
  row "read at pull, containerd store vs overlay2 (Docker 29, 105 MB)" "$(awk -v a="$read_29_containerd" -v b="$read_29_overlay2" 'BEGIN {printf "%.2f×", a/b}')" "≤ 2×"
fi

# Issue #5: the plugin.
out=$(gobench 'BenchmarkPluginLatency' ./test/bench)
row "GET /containers/json: divds vs a minimal allow-all plugin (median of 2000)" "$(metric divds-ms "$out") ms vs $(metric allowall-ms "$out") ms: ratio $(metric divds/allowall "$out") (bare daemon $(metric bare-ms "$out") ms)" "≤ 1.1"
out=$(gobench 'BenchmarkRunGateCached' ./authz 20000x)
row "run-gate decision, cached image, inside the plugin" "p99 $(metric p99-µs "$out") µs" "p99 < 1 ms"

echo
echo "| measure | result | target |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
