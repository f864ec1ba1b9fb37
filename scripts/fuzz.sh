#!/bin/sh
# Build the libFuzzer targets of ws/ (tests/fuzz/fuzz_*.c) with clang,
# ASan and UBSan, and run each for a bounded time on a copy of its seed
# corpus (tests/fuzz/corpus/NAME/). Fails on any crash, leak, timeout or
# broken invariant; what crashed is kept as OUT/crash-NAME-* and the log as
# OUT/fuzz_NAME.log. Ends with "Ok: N" and "Fail: N" lines (one per target)
# for .ci/run's counts.
#   FUZZ_SECONDS  seconds per target (default 30)
#   FUZZ_OUT      build and work directory (default build-fuzz)
#   CLANG         the compiler (default clang-14, else clang)
#   scripts/fuzz.sh [TARGET...]    e.g. scripts/fuzz.sh ws
set -u
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-30}
out=${FUZZ_OUT:-build-fuzz}
if [ -z "${CLANG:-}" ]; then
	CLANG=clang-14
	command -v "$CLANG" >/dev/null 2>&1 || CLANG=clang
fi
targets=${*:-http ws}

# The sources each target needs: only ws/'s codecs, which depend on
# nothing but libc and (for SHA-1) wolfSSL.
sources_for() {
	case $1 in
	http) echo ws/http.c ;;
	ws) echo ws/wsframe.c ;;
	*) echo "unknown target $1" >&2; return 1 ;;
	esac
}

mkdir -p "$out"
ok=0
fail=0
for t in $targets; do
	bin=$out/fuzz_$t
	log=$out/fuzz_$t.log
	echo "== fuzz_$t: build"
	# shellcheck disable=SC2046
	if ! srcs=$(sources_for "$t") ||
	   ! "$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-D_GNU_SOURCE -Iws "tests/fuzz/fuzz_$t.c" $srcs \
		$(pkg-config --cflags --libs wolfssl) -o "$bin"; then
		echo "fuzz_$t: build failed"
		fail=$((fail + 1))
		continue
	fi
	corpus=$out/corpus-$t
	rm -rf "$corpus"
	mkdir -p "$corpus"
	cp "tests/fuzz/corpus/$t/"* "$corpus/"
	rm -f "$out/crash-$t-"*
	echo "== fuzz_$t: run ${secs}s"
	if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
		-print_final_stats=1 -artifact_prefix="$out/crash-$t-" "$corpus" >"$log" 2>&1; then
		grep -E '^stat::number_of_executed_units|^Done ' "$log" | tail -n 2
		echo "fuzz_$t: ok"
		ok=$((ok + 1))
	else
		tail -n 40 "$log"
		echo "fuzz_$t: FAILED (log $log, inputs $out/crash-$t-*)"
		fail=$((fail + 1))
	fi
done

echo "Ok: $ok"
echo "Fail: $fail"
[ "$fail" -eq 0 ]
