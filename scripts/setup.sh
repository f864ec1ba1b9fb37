#!/bin/sh
# Install everything cosockd needs to build and test on Debian 12, as root.
# Safe to run again: apt skips what is already installed.
set -eu

PACKAGES="
  build-essential pkg-config meson ninja-build python3
  liblua5.4-dev lua5.4 liburing-dev libwolfssl-dev libyajl-dev libsystemd-dev libcriterion-dev
  socat openssl ca-certificates curl wrk python3-websockets procps util-linux iproute2
"
# Peers for the side-by-side benchmarks (bench/), not needed by the tests.
BENCH_PACKAGES="haproxy nginx libnginx-mod-stream gnuplot-nox"

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
