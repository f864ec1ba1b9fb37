#!/usr/bin/env bash
# run-echo.sh - cosockd's echo app side by side with the bare-C echo server.
#
#   bench/run-echo.sh [--build DIR] [--rounds N] [--duration SEC] ...
#
# 1. Echo throughput, latency and server CPU per round trip: interleaved
#    rounds (each round: bare C, `cosockd --backend=uring echo`, `cosockd
#    --backend=epoll echo`) of `cosockd-bench echo --conns 100 --size 64`, each
#    against a freshly started server; medians over the rounds.
# 2. Idle-connection cost: `cosockd-bench conns --count 10000` and 19000
#    against each server (fresh each time): server RSS growth per connection.
#
# The server runs on CPU 0, the load generator on CPU 1 (taskset). Results
# go to stdout and, when every run succeeded, to bench/RESULTS.md.
#
# Until the daemon runs, --stand-in runs the bare echo in cosockd's place,
# to test this script; it then writes no RESULTS.md unless --results FILE
# names one explicitly (and marks every figure as a stand-in).
#
# Environment: COSOCKD (default BUILD/cosockd), COSOCKD_BENCH (default
# BUILD/bench/cosockd-bench), CS_BARE_ECHO (default BUILD/bench/cs-bare-echo).
# Only 127.0.0.1 is ever contacted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=build
ROUNDS=5
DURATION=5
WARMUP=1
CONNS=100
SIZE=64
IDLE_COUNTS="10000 19000"
PORT=${PORT:-18600}
STAND_IN=0
RESULTS=""
RESULTS_SET=0
SKIP_ECHO=0
SKIP_IDLE=0
COMMAND="bench/run-echo.sh $*"

usage() {
	cat <<EOF
usage: bench/run-echo.sh [options]
  --build DIR        build tree (default: build, relative to the repo)
  --rounds N         interleaved echo rounds (default: $ROUNDS)
  --duration SEC     measured seconds per echo run (default: $DURATION)
  --warmup SEC       warmup seconds per echo run (default: $WARMUP)
  --conns N          echo connections (default: $CONNS)
  --size BYTES       echo message size (default: $SIZE)
  --idle "N M ..."   idle connection counts (default: "$IDLE_COUNTS")
  --port P           first TCP port on 127.0.0.1 to use (default: $PORT)
  --stand-in         run cs-bare-echo where cosockd would run (script test)
  --results FILE     write the results here (default: bench/RESULTS.md,
                     none with --stand-in)
  --no-results       do not write a results file
  --skip-echo, --skip-idle
EOF
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--warmup) WARMUP=$2; shift ;;
	--conns) CONNS=$2; shift ;;
	--size) SIZE=$2; shift ;;
	--idle) IDLE_COUNTS=$2; shift ;;
	--port) PORT=$2; shift ;;
	--stand-in) STAND_IN=1 ;;
	--results) RESULTS=$2; RESULTS_SET=1; shift ;;
	--no-results) RESULTS=""; RESULTS_SET=1 ;;
	--skip-echo) SKIP_ECHO=1 ;;
	--skip-idle) SKIP_IDLE=1 ;;
	-h|--help) usage 0 ;;
	*) echo "run-echo.sh: unknown option '$1'" >&2; usage ;;
	esac
	shift
done

case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
COSOCKD=${COSOCKD:-$BUILD/cosockd}
BENCH=${COSOCKD_BENCH:-$BUILD/bench/cosockd-bench}
BARE=${CS_BARE_ECHO:-$BUILD/bench/cs-bare-echo}
if [ "$RESULTS_SET" = 0 ] && [ "$STAND_IN" = 0 ]; then
	RESULTS="$ROOT/bench/RESULTS.md"
fi

die() { echo "run-echo.sh: $*" >&2; exit 1; }

[ -x "$BENCH" ] || die "no load generator at $BENCH (build first, or set COSOCKD_BENCH)"
[ -x "$BARE" ] || die "no bare echo at $BARE (build first, or set CS_BARE_ECHO)"
if [ "$STAND_IN" = 0 ]; then
	[ -x "$COSOCKD" ] || die "no daemon at $COSOCKD (set COSOCKD, or --stand-in to test this script)"
fi
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU 0, load on CPU 1)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cosockd-bench.XXXXXX")
SERVER_PID=""
cleanup() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servers ----

# The variants compared, in the order each round runs them.
VARIANTS="bare uring epoll"

variant_label() {
	case "$1" in
	bare) echo "bare C (cs-bare-echo)" ;;
	uring|epoll)
		if [ "$STAND_IN" = 1 ]; then echo "STAND-IN for cosockd --backend=$1"
		else echo "cosockd --backend=$1"; fi ;;
	esac
}

# Set SERVER_CMD to the command line of variant $1 listening on port $2.
server_cmd() {
	if [ "$1" = bare ] || [ "$STAND_IN" = 1 ]; then
		SERVER_CMD=("$BARE" --listen "127.0.0.1:$2")
	else
		# cosockd [OPTIONS] APP ...: global options come first.
		SERVER_CMD=("$COSOCKD" "--backend=$1" echo --listen "127.0.0.1:$2")
	fi
}

# Is something listening on 127.0.0.1:$1? (/proc/net/tcp: state 0A = LISTEN)
listening() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/tcp
}

# Start variant $1 on a fresh port, pinned to CPU 0; sets SERVER_PID and
# SERVER_PORT. Fails when it exits or does not listen within 10 s.
start_server() {
	PORT=$((PORT + 1))
	while listening "$PORT"; do PORT=$((PORT + 1)); done
	SERVER_PORT=$PORT
	server_cmd "$1" "$PORT"
	taskset -c 0 "${SERVER_CMD[@]}" >"$WORK/server-$1-$PORT.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 100); do
		listening "$PORT" && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "run-echo.sh: $(variant_label "$1") did not start listening on 127.0.0.1:$PORT:" >&2
	tail -n 5 "$WORK/server-$1-$PORT.log" >&2
	stop_server
	return 1
}

stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# ---- small helpers ----

# Value of "key": in a cosockd-bench JSON file (keys are unique there).
jget() {
	awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); print v; exit }' "$1"
}

# Median of the numbers given as arguments (mean of the middle two).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR == 0) print "nan";
		      else if (NR % 2) print a[(NR + 1) / 2];
		      else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# printf-style number formatting that passes "nan" through.
fmt() { awk -v f="$1" -v v="$2" 'BEGIN { if (v == "nan" || v == "") print "n/a"; else printf f "\n", v }'; }

# $1 / $2 formatted as a ratio.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "n/a"; else printf "%.2fx\n", a / b }'; }

FAILURES=()

# ---- echo rounds ----

declare -A RTPS P50 P99 P999 CPU_RT
run_echo() {
	local v=$1 round=$2 json="$WORK/echo-$1-$2.json"
	start_server "$v" || { FAILURES+=("echo $v round $round: server did not start"); return; }
	if taskset -c 1 "$BENCH" echo --target "127.0.0.1:$SERVER_PORT" \
		--conns "$CONNS" --size "$SIZE" --duration "$DURATION" \
		--warmup "$WARMUP" --pid "$SERVER_PID" --json "$json" \
		>"$WORK/echo-$v-$round.out" 2>&1; then
		RTPS[$v]+=" $(jget "$json" round_trips_per_s)"
		P50[$v]+=" $(jget "$json" p50)"
		P99[$v]+=" $(jget "$json" p99)"
		P999[$v]+=" $(jget "$json" p99_9)"
		CPU_RT[$v]+=" $(jget "$json" server_cpu_us_per_rt)"
		printf '  round %d %-36s %10.0f rt/s  p50 %5s us  p99 %5s us  server %6.2f us/rt\n' \
			"$round" "$(variant_label "$v")" "$(jget "$json" round_trips_per_s)" \
			"$(jget "$json" p50)" "$(jget "$json" p99)" \
			"$(jget "$json" server_cpu_us_per_rt)"
	else
		FAILURES+=("echo $v round $round: $(tail -n 1 "$WORK/echo-$v-$round.out")")
		echo "  round $round $(variant_label "$v"): FAILED: $(tail -n 1 "$WORK/echo-$v-$round.out")"
	fi
	stop_server
}

# ---- idle connections ----

declare -A IDLE_PER IDLE_GROWTH
run_idle() {
	local v=$1 n=$2 json="$WORK/conns-$1-$2.json"
	start_server "$v" || { FAILURES+=("conns $v $n: server did not start"); return; }
	if taskset -c 1 "$BENCH" conns --target "127.0.0.1:$SERVER_PORT" \
		--count "$n" --pid "$SERVER_PID" --hold 1 --json "$json" \
		>"$WORK/conns-$v-$n.out" 2>&1; then
		local before after
		before=$(jget "$json" rss_before_bytes)
		after=$(jget "$json" rss_after_bytes)
		IDLE_PER[$v,$n]=$(jget "$json" rss_per_conn_bytes)
		IDLE_GROWTH[$v,$n]=$((after - before))
		printf '  %-36s %6d conns: RSS +%s KiB, %s B per connection\n' \
			"$(variant_label "$v")" "$n" "$(( (after - before) / 1024 ))" \
			"$(fmt %.0f "${IDLE_PER[$v,$n]}")"
	else
		IDLE_PER[$v,$n]=nan
		FAILURES+=("conns $v $n: $(tail -n 1 "$WORK/conns-$v-$n.out")")
		echo "  $(variant_label "$v") $n conns: FAILED: $(tail -n 1 "$WORK/conns-$v-$n.out")"
	fi
	stop_server
}

# ---- run ----

# Other work on the machine skews every figure: record the load around the
# run, and warn up front.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
	echo "run-echo.sh: warning: machine is busy (loadavg $LOAD_BEFORE); figures will be noisy" >&2
fi
echo "== machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)"
[ "$STAND_IN" = 1 ] && echo "== STAND-IN MODE: cs-bare-echo runs where cosockd would; not cosockd figures"

if [ "$SKIP_ECHO" = 0 ]; then
	echo "== echo: $ROUNDS interleaved rounds, $CONNS conns, $SIZE B, ${DURATION} s (+${WARMUP} s warmup)"
	for r in $(seq "$ROUNDS"); do
		for v in $VARIANTS; do run_echo "$v" "$r"; done
	done
fi
if [ "$SKIP_IDLE" = 0 ]; then
	echo "== idle connections: $IDLE_COUNTS"
	for n in $IDLE_COUNTS; do
		for v in $VARIANTS; do run_idle "$v" "$n"; done
	done
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- summary ----

declare -A M_RTPS M_P50 M_P99 M_P999 M_CPU
for v in $VARIANTS; do
	# shellcheck disable=SC2086
	{
		M_RTPS[$v]=$(median ${RTPS[$v]:-})
		M_P50[$v]=$(median ${P50[$v]:-})
		M_P99[$v]=$(median ${P99[$v]:-})
		M_P999[$v]=$(median ${P999[$v]:-})
		M_CPU[$v]=$(median ${CPU_RT[$v]:-})
	}
done

echo_table() {
	echo "| server | round trips/s | vs bare C | p50 us | p99 us | p99.9 us | server CPU us/round trip | vs bare C |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for v in $VARIANTS; do
		echo "| $(variant_label "$v") | $(fmt %.0f "${M_RTPS[$v]}") | $(ratio "${M_RTPS[$v]}" "${M_RTPS[bare]}") | $(fmt %.0f "${M_P50[$v]}") | $(fmt %.0f "${M_P99[$v]}") | $(fmt %.0f "${M_P999[$v]}") | $(fmt %.2f "${M_CPU[$v]}") | $(ratio "${M_CPU[$v]}" "${M_CPU[bare]}") |"
	done
}

echo_rounds_table() {
	echo "| server | round trips/s per round | server CPU us/round trip per round |"
	echo "|---|---|---|"
	for v in $VARIANTS; do
		echo "| $(variant_label "$v") | $(for x in ${RTPS[$v]:-}; do fmt %.0f "$x"; done | paste -sd ' ') | $(for x in ${CPU_RT[$v]:-}; do fmt %.2f "$x"; done | paste -sd ' ') |"
	done
}

idle_table() {
	local head="| server |" rule="|---|"
	for n in $IDLE_COUNTS; do
		head+=" $n conns: RSS growth KiB | B per conn | vs bare C |"
		rule+="---:|---:|---:|"
	done
	echo "$head"
	echo "$rule"
	for v in $VARIANTS; do
		local row
		row="| $(variant_label "$v") |"
		for n in $IDLE_COUNTS; do
			local g=${IDLE_GROWTH[$v,$n]:-}
			row+=" $([ -n "$g" ] && echo $((g / 1024)) || echo n/a) | $(fmt %.0f "${IDLE_PER[$v,$n]:-nan}") | $(ratio "${IDLE_PER[$v,$n]:-nan}" "${IDLE_PER[bare,$n]:-nan}") |"
		done
		echo "$row"
	done
}

echo
if [ "$SKIP_ECHO" = 0 ]; then
	echo "== echo medians ($ROUNDS rounds)"
	echo_table
	echo
fi
if [ "$SKIP_IDLE" = 0 ]; then
	echo "== idle connection cost (server VmRSS growth / connections)"
	idle_table
	echo
fi

write_results() {
	local model kernel version
	model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	kernel="$(uname -srm)"
	if [ "$STAND_IN" = 1 ]; then
		version="none: STAND-IN run, cs-bare-echo in cosockd's place"
	else
		version="$("$COSOCKD" --version 2>/dev/null | head -n 1 || true)"
		version="${version:-unknown} (tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'not a git commit'))"
	fi
	{
		echo "# cosockd benchmark results"
		echo
		echo "Written by \`bench/run-echo.sh\`; rerun it rather than editing this file."
		echo
		echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "- Command: \`$COMMAND\`"
		echo "- Machine: $(nproc) CPUs ($model), $kernel, RLIMIT_NOFILE $(ulimit -Hn)"
		echo "- Pinning: server on CPU 0, load generator on CPU 1 (\`taskset\`)"
		echo "- Other load: loadavg $LOAD_BEFORE before the run, $LOAD_AFTER after (1/5/15 min)"
		echo "- cosockd: $version"
		if [ "$SKIP_ECHO" = 0 ]; then
			echo
			echo "## Echo: $CONNS connections, $SIZE-byte messages, closed loop"
			echo
			echo "\`cosockd-bench echo --conns $CONNS --size $SIZE --duration $DURATION --warmup $WARMUP\`"
			echo "against each server started fresh; $ROUNDS interleaved rounds, medians shown."
			echo "Latency is per round trip (all $CONNS connections in flight). Server CPU is"
			echo "user+sys from /proc/PID/stat over the measured window, divided by round trips."
			echo
			echo_table
			echo
			echo "Every round:"
			echo
			echo_rounds_table
		fi
		if [ "$SKIP_IDLE" = 0 ]; then
			echo
			echo "## Idle connections"
			echo
			echo "\`cosockd-bench conns --count N --hold 1\` against each server started fresh:"
			echo "N connections are opened, each does one 1-byte echo, then the server's VmRSS"
			echo "growth is divided by N (user-space memory only; kernel socket buffers are"
			echo "not in RSS)."
			echo
			idle_table
		fi
	} >"$RESULTS"
	echo "wrote $RESULTS"
}

if [ ${#FAILURES[@]} -gt 0 ]; then
	echo "== ${#FAILURES[@]} run(s) failed:" >&2
	printf '  %s\n' "${FAILURES[@]}" >&2
	[ -n "$RESULTS" ] && echo "run-echo.sh: $RESULTS not written (some runs failed)" >&2
	exit 1
fi
if [ -n "$RESULTS" ]; then
	write_results
fi
