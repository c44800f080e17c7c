#!/usr/bin/env bash
# Runs the whole test suite: unit and component tests (beside the code in src/),
# then integration tests (test/) that boot real microVMs, build real Dockerfiles
# and push with real OCI clients. Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "test: unit and component tests"
node --test --test-concurrency=2 dist/src/

echo "test: integration tests (real microVMs, one file at a time)"
node --test --test-concurrency=1 dist/test/
