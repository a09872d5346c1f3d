#!/usr/bin/env bash
# DIVDS demo. Today it shows the evaluation module (IVE) on saved scan
# reports; the end-to-end demo on a private dockerd replaces it with #6.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/divds-authz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=cmd/divds-authz/testdata

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "The default policy (divds-authz policy default)"
$bin policy default | sed -n '1,20p'

step "A saved report that scores 297.40 under the default policy: denied (exit 2)"
$bin policy default > "$tmp/default.yaml"
set +e
$bin --policy "$tmp/default.yaml" evaluate "$data/report-297.40.json" | sed -n '1,12p;$p' 
echo "exit code: ${PIPESTATUS[0]}"
set -e

step "The admin's what-if: approve two criticals until 2027-06-30 and re-evaluate"
cat > "$tmp/policy.yaml" <<'YAML'
whitelist:
  - id: CVE-2019-1001
    images: ["registry.example.com/app"]
    expires: 2027-06-30
    reason: "not reachable from the network (demo)"
  - id: CVE-2019-1002
    package: systemd          # a source package name covers its binaries
    reason: "fixed by the base image rebuild on Friday (demo)"
YAML
$bin policy check "$tmp/policy.yaml" >/dev/null && echo "policy check: valid"
set +e
$bin --policy "$tmp/policy.yaml" evaluate "$data/report-297.40.json" | grep -E 'Approved|Verdict' 
echo "exit code: ${PIPESTATUS[0]}"
set -e

step "A report that scores 183.45 under the default policy: allowed (exit 0)"
$bin --policy "$tmp/default.yaml" evaluate --quiet "$data/report-183.45.json"
echo "exit code: $?"

step "An invalid policy is refused with its line and field"
printf 'threshold: "200"\nweights:\n  severe: 3\n' > "$tmp/bad.yaml"
$bin policy check "$tmp/bad.yaml" || echo "exit code: $?"
