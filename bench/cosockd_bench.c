/*
 * cosockd_bench.c - cosockd-bench, the load generator of cosockd's
 * side-by-side benchmarks: the subcommand table and main().
 *
 *   cosockd-bench echo  ...   echo round trips, closed or open loop,
 *                             pipelined or not (cmd_echo.c)
 *   cosockd-bench rr    ...   HTTP/1.1 keep-alive request/response, plain
 *                             or over TLS (cmd_rr.c)
 *   cosockd-bench handshake   TLS handshakes: connect, handshake, close,
 *                             ...  over and over (cmd_handshake.c)
 *   cosockd-bench bulk  ...   one-way throughput, up or down (cmd_bulk.c)
 *   cosockd-bench conns ...   hold N idle connections, measure the server's
 *                             RSS per connection (cmd_conns.c)
 *   cosockd-bench ws    ...   WebSocket echo round trips (cmd_ws.c)
 *   cosockd-bench serve ...   the backends: http, sink, source, echo, ws
 *                             (cmd_serve.c, serve_http.c, serve_ws.c)
 *
 * echo, rr, handshake, bulk and ws share one run skeleton (load.c), one pacing
 * module (pace.c), one progress line (progress.c) and one report layout
 * (report.c); TLS, on the client side, is tls.c's (wolfSSL).
 *
 * Each subcommand prints a human summary on stdout and, with --json FILE,
 * writes its results and the environment as JSON. Exit status 0 on success;
 * otherwise one line on stderr and status 1 (2 for a usage error).
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static const struct subcommand subcommands[] = {
	{"echo", cs__cmd_echo, "echo round trips: throughput and latency"},
	{"rr", cs__cmd_rr, "HTTP/1.1 keep-alive requests (--tls: HTTPS): throughput and latency"},
	{"handshake", cs__cmd_handshake, "TLS handshakes: connect, handshake, close; per second"},
	{"bulk", cs__cmd_bulk, "one-way bulk throughput, up or down"},
	{"conns", cs__cmd_conns, "hold N connections; server RSS per connection"},
	{"ws", cs__cmd_ws, "WebSocket echo (RFC 6455): messages/s and latency"},
	{"serve", cs__cmd_serve, "backends to benchmark against: http, sink, source, echo, ws"},
};

static int usage(FILE *f, int status)
{
	fprintf(f, "usage: cosockd-bench SUBCOMMAND [OPTIONS]  (SUBCOMMAND --help for its options)\n\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
	return status;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, 2);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout, 0);
	if (!strcmp(argv[1], "--version")) {
		printf("cosockd-bench %s\n", COSOCKD_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (!strcmp(argv[1], subcommands[i].name))
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "cosockd-bench: unknown subcommand '%s'\n", argv[1]);
	return usage(stderr, 2);
}
