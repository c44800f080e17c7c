#!/usr/bin/env bash
# The main demo, on a fresh Debian 12 machine as root: installs what Flick needs
# (scripts/setup.sh, idempotent), then starts flickd, builds the example node app
# from its unchanged Dockerfile, pushes it, runs it with scale to zero, shows a
# request, the standby and the wake with its latency, and leaves the host running.
# A second run reuses everything and replaces the instance.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: Flick runs microVMs in network namespaces and needs root: run 'sudo bash scripts/demo.sh'" >&2
  exit 77
fi

echo "Setting up (Debian packages, npm dependencies, TypeScript, guest kernel; cached after the first run)"
bash scripts/setup.sh 2>&1 | sed 's/^/  /'

exec node dist/src/demo/main.js "$@"
