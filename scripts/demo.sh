#!/usr/bin/env bash
# Installs what segstream needs (scripts/bootstrap.sh), then runs `segstream demo`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
printf '\n==> segstream demo\n'
exec .venv/bin/segstream demo "$@"
