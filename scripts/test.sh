#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. This is the README's test command and what CI runs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Lint first: a lint or type error fails CI (and this command) before the tests start.
.venv/bin/ruff check .
# Types next: the runtime's contracts (files and settings under [tool.mypy] in pyproject.toml).
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra --durations=15 "$@"
