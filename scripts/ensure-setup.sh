#!/usr/bin/env bash
# Runs before `npm start` and `npm test`: when everything scripts/setup.sh provides is already here, it says
# nothing and takes a few milliseconds; when something is missing (a fresh clone), it runs the setup, which
# says what it installs. So the two commands work on a fresh clone with nothing run before them.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
for c in ip unshare openssl; do command -v "$c" >/dev/null || missing="$missing $c"; done
[ -x .tools/runsc ] || [ -n "${SUBSTRATE_RUNSC:-}" ] || missing="$missing runsc"
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  missing="$missing npm-packages"
fi
[ -z "$missing" ] && exit 0
printf 'setup: missing:%s; running scripts/setup.sh first\n' "$missing" >&2
exec bash scripts/setup.sh
