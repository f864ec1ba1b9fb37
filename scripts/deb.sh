#!/bin/sh
# Build the cosockd .deb from this source tree:
#   scripts/deb.sh OUTDIR
# copies the sources (git's tracked and untracked-but-not-ignored files, so
# no build directory comes along; the whole tree when this is not a git
# checkout) into a temporary directory, adds packaging/debian as ./debian,
# runs `dpkg-buildpackage -us -uc -b` there, moves the .deb into OUTDIR and
# prints its path. DEB_BUILD_OPTIONS defaults to "nocheck parallel=<CPUs>".
# Needs dpkg-dev, debhelper and the Build-Depends of packaging/debian/control
# (scripts/setup.sh installs them); runs without root (Rules-Requires-Root).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n '1s/^cosockd (\([^)]*\)).*/\1/p' "$root/packaging/debian/changelog")
[ -n "$version" ] || { echo "$0: no version in packaging/debian/changelog" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cosockd-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
src="$tmp/cosockd-$version"
mkdir "$src"

cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Files deleted from the work tree but still in the index are skipped.
	# shellcheck disable=SC2016 # $f is for the inner sh
	git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done; true' sh |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$src"
fi
rm -rf "$src/debian"
cp -r packaging/debian "$src/debian"

cd "$src"
DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-"nocheck parallel=$(nproc)"} \
	dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1 || {
	tail -n 60 "$tmp/build.log" >&2
	echo "$0: dpkg-buildpackage failed (last 60 lines above)" >&2
	exit 1
}

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb="cosockd_${version}_${arch}.deb"
[ -f "$tmp/$deb" ] || { echo "$0: dpkg-buildpackage made no $deb" >&2; exit 1; }
mv "$tmp/$deb" "$out/$deb"
echo "$out/$deb"
