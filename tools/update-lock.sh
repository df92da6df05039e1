#!/usr/bin/env bash
# Rewrite requirements.lock from a fresh environment: install the project with its test
# and SLURM extras into a scratch venv, then freeze it. Run after changing pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --upgrade pip
"$scratch/venv/bin/python" -m pip install -q -e '.[test,slurm]'
{
  sed -n '1,/^# Regenerate/p' requirements.lock
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages" >&2
