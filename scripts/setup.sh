#!/bin/sh
# Set up a clone of pacha on Debian or Ubuntu: the README's two commands start with it.
#   sh scripts/setup.sh          what the demo needs: git, ca-certificates, libdeflate0 (snapshots
#                                deflate with it), npm (only if absent)
#   sh scripts/setup.sh --test   and what the tests need: OpenSSH, rsync, restic, strace, xattr tools,
#                                dpkg-dev, lintian, groff (the .deb test)
# It installs only the Debian packages that are missing (as root, or through sudo), never npm
# over a Node.js that came with its own npm (e.g. NodeSource's), then runs `npm ci` unless
# node_modules is already installed from this package-lock.json. `npm ci` fetches the project's
# own Node.js 24 (the `node` dev dependency): everything after runs under it, whatever Node
# installed npm.
set -eu
cd "$(dirname "$0")/.."

need="git ca-certificates libdeflate0"
case "${1:-}" in
  --test) need="$need strace openssh-server openssh-sftp-server openssh-client rsync restic attr acl libcap2-bin dpkg-dev binutils lintian fakeroot groff-base" ;;
  "") ;;
  *) echo "usage: sh scripts/setup.sh [--test]" >&2; exit 2 ;;
esac
# npm from Debian only when there is none: a Node.js from elsewhere brings its own npm, and
# Debian's npm would not install beside it ("held broken packages").
command -v npm >/dev/null 2>&1 || need="$need npm"

missing=""
for p in $need; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=""
  elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
  else
    echo "scripts/setup.sh: these Debian packages are missing:$missing; run this as root or install sudo" >&2
    exit 1
  fi
  echo "scripts/setup.sh: installing$missing"
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# npm ci (which empties node_modules first) only when node_modules does not match the lock file.
if [ node_modules/.package-lock.json -nt package-lock.json ] && [ -x node_modules/.bin/node ]; then
  echo "scripts/setup.sh: node_modules is up to date"
else
  echo "scripts/setup.sh: npm ci (npm may warn that this Node is too old: the project's own Node 24 comes with it)"
  npm ci --no-audit --no-fund
fi
