#!/usr/bin/env bash
# Fetches gVisor's runsc 0.0~20240729 (Debian trixie package) into <project>/.tools/runsc without touching the
# machine's apt configuration: a private apt directory points at the Debian mirror already configured in the
# machine's own sources, downloads the one .deb, and only the binary is unpacked.
# Also installs iproute2 (`ip`) when it is missing. Idempotent. Progress goes to stderr.
#
# Why this version: bookworm's runsc (0.0~20221219) cannot checkpoint a process with a TCP listener
# ("endpoint still has waiters upon save") and kills the container when it tries. See
# /work/shared/reference/gvisor-local.md §0.
set -euo pipefail

RUNSC_VERSION="0.0~20240729.0-4+b7"
RUNSC_VERSION_PREFIX="0.0~20240729"
SUITE="trixie"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"

say() { printf 'install-runsc: %s\n' "$*" >&2; }
die() {
  printf 'install-runsc: error: %s\n' "$1" >&2
  [ $# -ge 2 ] && printf 'install-runsc: remedy: %s\n' "$2" >&2
  exit 1
}

PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$PROJECT/.tools"
DEST="$TOOLS/runsc"

# --- iproute2 -------------------------------------------------------------------------------------------------
if ! command -v ip >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "'ip' (iproute2) is missing and installing it needs root" "run: sudo apt-get install -y iproute2"
  say "installing iproute2 (ip is missing)"
  apt-get install -y iproute2 >&2 || die "apt-get install iproute2 failed" "run 'apt-get update && apt-get install -y iproute2' and retry"
fi

# --- already there? -------------------------------------------------------------------------------------------
if [ -x "$DEST" ]; then
  have="$("$DEST" --version 2>/dev/null | head -n1 || true)"
  case "$have" in
    *"version $RUNSC_VERSION_PREFIX"*) say "runsc already installed: $DEST ($have)"; exit 0 ;;
    *) say "replacing $DEST (found: ${have:-unreadable}, want $RUNSC_VERSION_PREFIX)" ;;
  esac
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found" "this script needs a Debian-based machine with apt"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found" "install dpkg (apt-get install -y dpkg)"
[ -r "$KEYRING" ] || die "Debian archive keyring $KEYRING not found" "apt-get install -y debian-archive-keyring"

# --- mirror from the machine's own apt sources ------------------------------------------------------------------
mirror=""
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  # deb822: first URIs: value that is not the security archive
  mirror="$(awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) if ($i !~ /security/) { print $i; exit } }' "$f")"
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ]; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    mirror="$(awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while (i<=NF && $i !~ /\]$/) i++; i++ } if ($i !~ /security/) { print $i; exit } }' "$f")"
    [ -n "$mirror" ] && break
  done
fi
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/*.sources (URIs:) or /etc/apt/sources.list" \
  "configure a Debian mirror in your apt sources, or place runsc $RUNSC_VERSION_PREFIX at $DEST yourself"
mirror="${mirror%/}"
say "using the Debian mirror from the machine's apt sources: $mirror (suite $SUITE, private apt dir)"

# --- private apt dir --------------------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/install-runsc.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc/preferences.d" "$work/dl"
echo "deb [signed-by=$KEYRING] $mirror $SUITE main" >"$work/etc/sources.list"
O=(-o "Dir::Etc::SourceList=$work/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
   -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d" -o "Dir::State::Lists=$work/lists"
   -o "Dir::Cache=$work/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")

say "fetching the $SUITE package index (private; system apt lists untouched)"
if ! apt-get "${O[@]}" -q update >"$work/update.log" 2>&1; then
  tail -n 20 "$work/update.log" >&2
  die "apt-get update against $mirror $SUITE failed" "check that $mirror is reachable from this machine and retry"
fi
say "downloading runsc=$RUNSC_VERSION"
if ! (cd "$work/dl" && apt-get "${O[@]}" -q download "runsc=$RUNSC_VERSION") >"$work/download.log" 2>&1; then
  tail -n 20 "$work/download.log" >&2
  die "could not download runsc=$RUNSC_VERSION from $mirror $SUITE" \
    "the version may have left the mirror; check 'apt-cache policy runsc' against $SUITE, or place a runsc $RUNSC_VERSION_PREFIX binary at $DEST"
fi
deb="$(ls "$work"/dl/runsc_*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || die "download finished but no runsc_*.deb found" "retry; see apt output above"

say "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$work/x" || die "dpkg-deb -x failed on $deb" "retry; the download may be corrupt"
[ -x "$work/x/usr/bin/runsc" ] || die "package has no usr/bin/runsc" "report this; the package layout changed"
got="$("$work/x/usr/bin/runsc" --version 2>/dev/null | head -n1 || true)"
case "$got" in
  *"version $RUNSC_VERSION_PREFIX"*) ;;
  *) die "unpacked runsc reports '${got:-nothing}', expected $RUNSC_VERSION_PREFIX" "retry; if it persists the mirror serves another build" ;;
esac

mkdir -p "$TOOLS"
install -m 0755 "$work/x/usr/bin/runsc" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
say "installed $DEST ($got)"
