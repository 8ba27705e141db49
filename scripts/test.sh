#!/usr/bin/env bash
# The whole test suite: lint (ruff), types (mypy --strict), the layering (import-linter), tests
# (pytest, against a real InfluxDB that the suite starts on a free loopback port). Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/pytest "$@"
