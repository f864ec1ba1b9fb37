#!/bin/sh
# Install everything cosockd needs to build and test on Debian 12, as root.
# Safe to run again: apt skips what is already installed.
set -eu

PACKAGES="
  build-essential pkg-config meson ninja-build python3
  liblua5.4-dev lua5.4 liburing-dev libwolfssl-dev libyajl-dev libsystemd-dev libcriterion-dev
  socat openssl ca-certificates curl wrk python3-websockets procps util-linux iproute2 chromium
  clang-14 libclang-rt-14-dev systemd debhelper lintian man-db
"
# Peers for the side-by-side benchmarks (bench/), not needed by the tests.
# bench/compare's ws section also runs the npm `ws` package under Node.js:
# Debian's nodejs and npm unless a Node.js is installed already (one from
# elsewhere brings its own npm, which Debian's npm package would clash with).
BENCH_PACKAGES="haproxy nginx libnginx-mod-stream gnuplot-nox"
command -v node >/dev/null 2>&1 || BENCH_PACKAGES="$BENCH_PACKAGES nodejs npm"

missing=""
for p in $PACKAGES ${WITH_BENCH:+$BENCH_PACKAGES}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi
