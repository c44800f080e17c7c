#!/usr/bin/env bash
# Installs everything Flick needs on a Debian 12 host, idempotently: Debian
# packages, npm dependencies, the compiled TypeScript, the guest kernel and init.
# A second run on a set-up machine takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: Flick manages taps, namespaces and microVMs and needs root: run as root (sudo bash scripts/setup.sh)" >&2
  exit 77
fi

# Debian packages. Keep this list the one place that names them.
PACKAGES=(
  qemu-system-x86            # the VMM: microvm machine, QMP
  linux-source-6.1 bc flex bison libelf-dev libssl-dev xz-utils make gcc libc6-dev patch  # guest kernel build (patch: guest/kernel/patches)
  musl-tools                 # static guest init
  buildah skopeo podman fuse-overlayfs uidmap  # daemonless builds and real OCI peers
  debootstrap                # local base images (no Docker Hub here)
  erofs-utils squashfs-tools # read-only root filesystems
  icu-devtools binutils      # icupkg and readelf/strip: trimming node's built-in ICU data, stripping binaries
  iproute2 iptables          # taps, namespaces, isolation
  wrk                        # proxy benchmark
  runc                       # the container peer in the wake benchmark (crun fails on hybrid cgroups)
  etcd-server etcd-client    # a cluster's state (src/cluster; its tests start their own members)
  qemu-utils e2fsprogs       # volumes: qemu-img (qcow2, copy-on-write clones), mkfs.ext4
  postgresql-15 postgresql-client  # examples/postgres and its tests: the guest's server, the host's psql/pgbench/pg_ctl peer
  curl ca-certificates openssl  # the TLS tests: curl --cacert against a CA they make with openssl
  chromium                   # the web console's browser tests (driven by playwright-core)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies: only when package-lock.json changed since the last install.
stamp=node_modules/.flick-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

echo "setup: compiling TypeScript"
# From scratch, so a renamed or deleted source leaves no stale test behind in dist/.
rm -rf dist
npx tsc -p tsconfig.json

# The web console's front end (web/ -> web/dist, served by flickd at /console/):
# rebuilt only when its sources or the lock file changed. Vite runs from
# node_modules, so this needs no network.
console_want=$(cat package-lock.json $(find web -path web/dist -prune -o -type f -print | sort) | sha256sum | cut -d' ' -f1)
if [ ! -f web/dist/.flick-build-hash ] || [ "$(cat web/dist/.flick-build-hash)" != "$console_want" ]; then
  echo "setup: building the web console"
  npm run --silent build:console
  echo "$console_want" >web/dist/.flick-build-hash
fi

# Guest kernel and init: cached by hash under /var/cache/flick; instant when cached.
node bin/flick guest build
