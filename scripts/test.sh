#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/bootstrap.sh, which also fetches the
# deploy tier's kustomize, CRD schemas and linters with scripts/k8s-tools.sh), compiles the ops
# with their CUDA sources, then runs ruff, mypy and every test tier (unit; deploy, which fails
# on a missing tool; integration against a real Kafka broker and Redis server it starts; gpu:
# skipped with its reason without CUDA).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SEGSTREAM_OPS_BUILD_FLAGS=--require-cuda bash scripts/bootstrap.sh

printf '\n==> ruff\n'
.venv/bin/ruff format --check .
.venv/bin/ruff check .

printf '\n==> mypy\n'
.venv/bin/mypy

printf '\n==> pytest: unit, integration, gpu, deploy\n'
.venv/bin/python -m pytest -rs -p no:cacheprovider tests/unit tests/deploy tests/integration tests/gpu "$@"
