#!/usr/bin/env bash
# Regenerates the linters' locks in third_party/lint/ after a version change in requirements.in or
# package.json: requirements_lock.txt (ruff, every wheel's hash) and package-lock.json (buildifier,
# with its integrity hash). Registry addresses stay out of both: they are machine-local settings.
set -euo pipefail
cd "$(dirname "$0")"
venv=${PIPTOOLS_VENV:-/var/tmp/rules_ota-piptools}
[ -x "$venv/bin/pip-compile" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q pip-tools; }
"$venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links \
  -o requirements_lock.txt requirements.in
npm install --package-lock-only --omit-lockfile-registry-resolved --ignore-scripts --no-audit --no-fund
