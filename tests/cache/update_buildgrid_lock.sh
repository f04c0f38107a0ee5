#!/usr/bin/env bash
# Regenerates third_party/buildgrid_requirements_lock.txt (BuildGrid and its dependencies, every file's
# hash) from third_party/buildgrid_requirements.in. BuildGrid 0.9.x needs Python >= 3.13, and
# pip-compile resolves environment markers for the Python it runs on, so it runs from a 3.13 venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${BUILDGRID_PYTHON:-$HOME/.pyenv/versions/3.13.0/bin/python3}
venv=${PIPTOOLS313_VENV:-/var/tmp/rules_ota-piptools313}
[ -x "$venv/bin/pip-compile" ] || { "$python" -m venv "$venv" && "$venv/bin/pip" install -q pip-tools; }
# --no-emit-*: machine-local index options stay out of the lock.
"$venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links \
  -o third_party/buildgrid_requirements_lock.txt third_party/buildgrid_requirements.in
