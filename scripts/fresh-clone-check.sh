#!/bin/sh
# Does the README work as written? Clone the repository into an empty temporary folder and run
# the two set-up commands of README.md ("# 1." and "# 2." in the Set up block), read from the
# README itself and run verbatim, one after the other; print how long each took.
#   sh scripts/fresh-clone-check.sh [REPOSITORY]   (default: this checkout's committed HEAD)
# The clone is removed when both pass and kept (its path printed) when one fails.
# Command 2 runs the whole test suite: minutes, not seconds.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$here}
dir=$(mktemp -d "${TMPDIR:-/tmp}/pacha-fresh-clone.XXXXXX")
# mktemp makes it 0700: some tests run the CLI as another user, who must reach the clone.
chmod 0755 "$dir"
git clone -q "$src" "$dir/pacha"
cd "$dir/pacha"

# The first command line after "# 1. ..." and after "# 2. ..." inside the ```sh block of "## Set up".
commands=$(awk '
  /^## Set up/ { section = 1; next }
  section && /^## / { exit }
  section && /^```sh/ { block = 1; next }
  block && /^```/ { exit }
  block && /^# [12]\. / { want = 1; next }
  block && want && NF { print; want = 0 }
' README.md)
[ "$(printf '%s\n' "$commands" | grep -c .)" -eq 2 ] || { echo "fresh-clone-check: expected two commands in README.md's Set up block, found:" >&2; printf '%s\n' "$commands" >&2; exit 1; }

n=0
printf '%s\n' "$commands" | while IFS= read -r cmd; do
  n=$((n + 1))
  echo "== $n: $cmd   (in $dir/pacha)"
  start=$(date +%s)
  if sh -c "$cmd" </dev/null; then
    echo "== $n: passed in $(( $(date +%s) - start )) s: $cmd"
  else
    echo "== $n: FAILED after $(( $(date +%s) - start )) s: $cmd (the clone is kept: $dir/pacha)"
    exit 1
  fi
done || exit 1
cd /
rm -rf "$dir"
echo "fresh-clone-check: both README commands passed in a fresh clone of $src"
