#!/usr/bin/env bash
# Remote-cache reuse and reproducible packages, against real servers on 127.0.0.1: BuildGrid (gRPC)
# and nginx (HTTP). CI runs it after `bazel test //...`; it prints one PASS/FAIL line per check, then
# `N passed, N failed`, and exits non-zero when a check failed. Arguments go to run_cache_checks.py
# (e.g. --targets //py:ota_manifest_py --mnemonics ProtocPy; --hermetic test; --caches http).
#
# Everything it starts (the cache servers, one Bazel server per output base) is stopped by PID: by
# the Python driver when it finishes, and by the EXIT trap of tests/cache/scratch.sh should the
# driver die first.
# RULES_OTA_CACHE_CHECKS_KEEP=1 keeps the scratch directory (copies, logs) for a post-mortem.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/cache/scratch.sh
source "$repo/tests/cache/scratch.sh"
scratch_dir rules_ota-cache-checks RULES_OTA_CACHE_CHECKS_KEEP

cd "$repo"
/usr/bin/python3 -m tests.cache.run_cache_checks --work_dir "$work" "$@"
