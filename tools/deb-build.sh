#!/usr/bin/env bash
# make -f Makefile.apxs deb: the Debian package libapache2-mod-h2chat from
# debian/ with dpkg-buildpackage (binary only, unsigned). dpkg-buildpackage
# writes to the parent directory: this build's .deb, .buildinfo and .changes
# are moved from there to build/deb/ (earlier ones there are removed first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools/deps.sh deb
src=$(dpkg-parsechangelog -S Source)
version=$(dpkg-parsechangelog -S Version)
parent=$(dirname "$root")
out="$root/build/deb"
dpkg-buildpackage -us -uc -b
mkdir -p "$out"
rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.buildinfo "$out"/*.changes
shopt -s nullglob
built=("$parent/${src}_${version}_"* "$parent/${src}-dbgsym_${version}_"*)
[ ${#built[@]} -gt 0 ] || { echo "deb: nothing built in $parent" >&2; exit 1; }
mv "${built[@]}" "$out/"
ls -l "$out"
