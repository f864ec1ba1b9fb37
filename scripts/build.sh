#!/bin/sh
# Configure (first time) or reconfigure the build directory $1 with the
# meson options that follow, then build it.
#   scripts/build.sh build
#   scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false
set -eu
dir=${1:-build}
[ $# -gt 0 ] && shift
if [ -f "$dir/build.ninja" ]; then
	meson configure "$dir" "$@"
else
	meson setup "$dir" "$@"
fi
ninja -C "$dir"
