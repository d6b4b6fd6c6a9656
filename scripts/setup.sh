#!/usr/bin/env bash
# Sets up everything the project needs on a fresh Debian machine: system packages (iproute2 for network
# namespaces, protoc for `npm run gen`), gVisor's runsc 2024 build (scripts/install-runsc.sh, which does not
# touch the system's apt sources), and the npm packages. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/struct.proto ] || need_pkgs+=(libprotobuf-dev)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${need_pkgs[*]}; install them as root: apt-get install -y ${need_pkgs[*]}"
    exit 1
  fi
  say "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

bash scripts/install-runsc.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # `npm install` with the committed lock file: the versions are the lock's. (npm 11's `npm ci` rejects a lock
  # that leaves out other platforms' optional packages, which is how npm writes it on this machine.)
  say "installing npm packages (better-sqlite3 builds from source: about 2 minutes on 2 cores)"
  npm install --no-audit --no-fund --loglevel=error
fi
say "done. Try: node bin/substrate-driver.js local doctor"
