#!/usr/bin/env bash
# Remote execution of //release:incremental_ota and //release:full_ota on BuildGrid (Execution and
# Bots services, SQL scheduler on PostgreSQL) with two test workers (tests/remote_exec/bots_worker.py),
# all on 127.0.0.1. CI runs it after the cache checks; it prints one PASS/FAIL line per check, the
# per-action costs, then `N passed, N failed`, and exits non-zero when a check failed. Arguments go to
# run_remote_exec_checks.py (e.g. --workers 3).
#
# Installs Debian's postgresql when it is missing (BuildGrid's scheduler needs it; nothing else does,
# so bootstrap.sh leaves it out). Everything it starts (PostgreSQL, BuildGrid, the workers, one Bazel
# server per output base) is stopped by PID: by the Python driver, and by the EXIT trap of
# tests/cache/scratch.sh should the driver die first. RULES_OTA_REMOTE_EXEC_CHECKS_KEEP=1 keeps the
# scratch directory.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  echo "run_remote_exec_checks: installing postgresql (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null; } \
    || { echo "0 passed, 1 failed (postgresql could not be installed)"; exit 1; }
fi

# shellcheck source=tests/cache/scratch.sh
source "$repo/tests/cache/scratch.sh"
scratch_dir rules_ota-remote-exec RULES_OTA_REMOTE_EXEC_CHECKS_KEEP

cd "$repo"
/usr/bin/python3 -m tests.remote_exec.run_remote_exec_checks --work_dir "$work" "$@"
