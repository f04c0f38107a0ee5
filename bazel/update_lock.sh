#!/usr/bin/env bash
# Regenerates third_party/requirements_lock.txt from third_party/requirements.in with every file's
# hash (all platforms and Python versions PyPI has), so the same lock installs anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PIPTOOLS_VENV:-/var/tmp/rules_ota-piptools}
[ -x "$venv/bin/pip-compile" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q pip-tools; }
# --no-emit-*: keep machine-local index options out of the lock (pip_lock_repository rejects them).
"$venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links \
  -o third_party/requirements_lock.txt third_party/requirements.in
