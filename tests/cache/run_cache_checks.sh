#!/usr/bin/env bash
# Remote-cache reuse and reproducible packages, against real servers on 127.0.0.1: BuildGrid (gRPC)
# and nginx (HTTP). CI runs it after `bazel test //...`; it prints one PASS/FAIL line per check, then
# `N passed, N failed`, and exits non-zero when a check failed. Arguments go to run_cache_checks.py
# (e.g. --targets //py:ota_manifest_py --mnemonics ProtocPy; --hermetic test; --caches http).
#
# Everything it starts (the cache servers, one Bazel server per output base) is stopped by PID: by
# the Python driver when it finishes, and by the EXIT trap below should the driver die first.
# RULES_OTA_CACHE_CHECKS_KEEP=1 keeps the scratch directory (copies, logs) for a post-mortem.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/rules_ota-cache-checks.XXXXXX")

stop_pid() {  # stop_pid PID: only if it is still one of ours (its command line names $work)
  local pid=$1
  local cmdline
  # Read first, then match: `tr | grep -q` under pipefail fails with tr's SIGPIPE when grep matches.
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  [[ "$cmdline" == *"$work"* ]] || return 0
  kill "$pid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  kill -9 "$pid" 2>/dev/null
}

cleanup() {
  local f
  for f in "$work"/pids/*.pid "$work"/output-roots/*/*/server/server.pid.txt; do
    [ -f "$f" ] && stop_pid "$(cat "$f")"
  done
  if [ "${RULES_OTA_CACHE_CHECKS_KEEP:-0}" = 1 ]; then
    echo "run_cache_checks: kept $work"
  else
    chmod -R u+w "$work" 2>/dev/null
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

cd "$repo"
/usr/bin/python3 -m tests.cache.run_cache_checks --work_dir "$work" "$@"
