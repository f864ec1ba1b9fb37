/*
 * load.h - the run skeleton the load scenarios (echo, rr, bulk) share.
 *
 * The skeleton opens the connections (before the clock starts), spreads
 * them round-robin over --threads workers, each running its own
 * edge-triggered epoll loop with its own counters and histogram, measures
 * CPU time over the window [start + warmup, start + warmup + duration),
 * shows the progress line, merges the workers' results, and reports them:
 * a human summary on stdout and, with --json, one JSON document whose
 * layout is the same for every scenario.
 *
 * A scenario supplies a struct cs__scenario: the size of its connection
 * (which begins with a struct cs__conn), offer() - the connection may start
 * requests now - and event() - its socket reported events. The skeleton
 * owns the sockets: it connects, completes reconnects, and closes.
 * Only work that completes inside the window counts.
 *
 * With --tls the skeleton also owns the TLS session of every connection
 * (tls.h): a connection is handed to the scenario (offer()) once its
 * handshake is done, and the scenario reads and writes through
 * cs__conn_recv() and cs__conn_send(), which speak TLS or not. The first
 * connections are opened and shaken hands with before the clock starts;
 * reconnects do both inside the loop, without blocking.
 */
#ifndef CS_BENCH_LOAD_H
#define CS_BENCH_LOAD_H

#include <getopt.h>
#include <pthread.h>

#include "bench.h"
#include "hist.h"
#include "pace.h"
#include "progress.h"
#include "tls.h"

/* The least scratch buffer a worker has for reading. */
#define CS__SCRATCH_SIZE (64 * 1024)

/* What went wrong, counted per kind; names in cs__err_name(). */
enum cs__err {
	CS__ERR_CONNECT,     /* "connect": a (re)connect failed */
	CS__ERR_RESET,       /* "reset": ECONNRESET, EPIPE */
	CS__ERR_EOF,         /* "eof": closed with work outstanding */
	CS__ERR_TIMEOUT,     /* "timeout" */
	CS__ERR_MISMATCH,    /* "mismatch": bytes differ from what was sent */
	CS__ERR_BAD,         /* "bad-response": malformed HTTP */
	CS__ERR_UNSUPPORTED, /* "unsupported-response": HTTP we do not parse */
	CS__ERR_STATUS,      /* "http-status": a status other than 2xx */
	CS__ERR_TLS,         /* "tls": a TLS handshake or record failed */
	CS__ERR_OTHER,       /* "other": any other socket error */
	CS__ERR_KINDS
};

const char *cs__err_name(enum cs__err kind);

/* The error kind of a socket errno. */
enum cs__err cs__err_of_errno(int err);

struct cs__scenario;

/* The run's settings: the [common] options, and what the scenario sets. */
struct cs__load_cfg {
	const char *mode; /* "echo", "rr", "bulk" */
	const char *conns_opt; /* "--conns" or "--streams" */
	struct sockaddr_in target;
	const char *target_str;
	uint64_t conns;
	double rate;      /* requests/s over all connections; 0 = closed loop */
	uint32_t depth;   /* requests in flight per connection; 0 = none (bulk) */
	double duration, warmup;
	uint64_t threads;
	pid_t pid;        /* server whose CPU time to measure, 0 = none */
	const char *json;
	const struct cs__scenario *sc;
	const void *ctx;  /* the scenario's own settings */
	size_t scratch;   /* bytes of each worker's scratch buffer (>= 64 KiB) */
	int tls;            /* --tls (or --tls-ca) */
	const char *tls_ca; /* --tls-ca FILE: verify the server; NULL = don't */
	int tls_resume;     /* offer each connection's last session on the next */
	struct WOLFSSL_CTX *tls_ctx; /* set when the run starts */
	/* Set when the run starts. */
	uint64_t t_start, t_measure, t_end;
};

/* Every scenario connection begins with this. */
struct cs__conn {
	int fd;         /* -1 once closed */
	int connecting; /* a reconnect is under way (TCP, then TLS) */
	int handshaking; /* connecting: TCP is up, the TLS handshake is not */
	uint64_t index; /* over all connections: picks the source address */
	uint64_t t_open; /* when the current connection's connect() started */
	struct cs__flight flight; /* when depth > 0 */
	struct WOLFSSL *tls; /* --tls: the session on fd */
	struct WOLFSSL_SESSION *resume; /* tls_resume: what to offer next */
};

/* One worker thread and what it owns. Nothing here is shared while the
 * run lasts, except `live`, read by the progress line. */
struct cs__worker {
	pthread_t tid;
	const struct cs__load_cfg *cfg;
	int epfd;
	unsigned char *conns; /* nconns scenario connections, sc->conn_size each */
	size_t nconns, alive;
	struct cs__conn **redo; /* reconnects to start at the top of the loop */
	size_t nredo;
	struct cs__pace pace;
	unsigned char *scratch; /* cfg->scratch bytes */
	/* Inside the window. */
	uint64_t ops, bytes;
	uint64_t errors[CS__ERR_KINDS];
	char first_error[128];
	uint64_t handshakes, resumed; /* TLS handshakes completed, resumed */
	struct cs__hist hist;
	struct cs__live *live;
	char negotiated[96]; /* the first handshake's version, cipher, group */
};

struct cs__scenario {
	size_t conn_size;
	int latency;       /* ops have latencies (echo, rr); bulk's ops are bytes */
	/* Connections are the work (handshake): none is opened before the
	 * clock starts, every one is connected inside the loop, and the
	 * scenario ends each with cs__conn_reconnect(), which opens the next. */
	int churn;
	/* The connection may start requests: once at the start, after a
	 * reconnect, and in open loop when one of its slots has come. */
	void (*offer)(struct cs__worker *w, struct cs__conn *c, uint64_t now);
	/* Its socket reported events (EPOLLIN, EPOLLOUT, ...). */
	void (*event)(struct cs__worker *w, struct cs__conn *c, uint32_t events);
	/* The first summary line after "MODE TARGET", and the scenario's own
	 * members of "params". */
	void (*describe)(FILE *f, const struct cs__load_cfg *cfg);
	void (*params)(struct cs__json *j, const struct cs__load_cfg *cfg);
	/* The window is over, in the worker's thread (NULL: nothing to do): a
	 * chance to end its connections in good order (a WebSocket Close)
	 * before the skeleton closes them. It must count no errors (the
	 * run's figures are final) and be bounded in time. */
	void (*finish)(struct cs__worker *w);
};

/* ---- options ---- */

enum {
	CS__OPT_TARGET = 0x100,
	CS__OPT_DURATION,
	CS__OPT_WARMUP,
	CS__OPT_THREADS,
	CS__OPT_PID,
	CS__OPT_JSON,
	CS__OPT_HELP,
	CS__OPT_CONNS, /* --conns or --streams */
	CS__OPT_RATE,
	CS__OPT_TLS,
	CS__OPT_TLS_CA,
	CS__OPT_SCENARIO /* first free value for a scenario's own options */
};

/* The [common] options, for a scenario's getopt_long table. */
#define CS__LOAD_OPTIONS                                              \
	{"target", required_argument, NULL, CS__OPT_TARGET},          \
	{"duration", required_argument, NULL, CS__OPT_DURATION},      \
	{"warmup", required_argument, NULL, CS__OPT_WARMUP},          \
	{"threads", required_argument, NULL, CS__OPT_THREADS},        \
	{"pid", required_argument, NULL, CS__OPT_PID},                \
	{"json", required_argument, NULL, CS__OPT_JSON},              \
	{"help", no_argument, NULL, CS__OPT_HELP}

/* --rate, for the scenarios that have an open loop. */
#define CS__RATE_OPTION {"rate", required_argument, NULL, CS__OPT_RATE}

/* --tls and --tls-ca, for the scenarios that speak TLS, and their text. */
#define CS__TLS_OPTIONS                                               \
	{"tls", no_argument, NULL, CS__OPT_TLS},                      \
	{"tls-ca", required_argument, NULL, CS__OPT_TLS_CA}
#define CS__TLS_USAGE \
	"  [--tls] [--tls-ca FILE]   TLS (wolfSSL); the server's certificate is checked\n" \
	"                            only with --tls-ca: its chain must end in FILE\n"

/* The [common] options' text for a usage message. */
#define CS__LOAD_USAGE \
	"  [--duration S (5)] [--warmup S (1)] [--threads N (1)] [--pid PID] [--json FILE]\n"

/* Defaults for mode; conns_opt names the connection count's option. */
void cs__load_defaults(struct cs__load_cfg *cfg, const char *mode, const char *conns_opt);

/* Handle option o if it is a common one: returns 1, or 0 when it is not
 * (then the scenario handles it). --help prints usage and exits 0. */
int cs__load_option(struct cs__load_cfg *cfg, int o, const char *arg, const char *usage);

/* After getopt: complain about stray arguments and missing options (exit
 * 2), and fit --threads to the connection count. */
void cs__load_check(struct cs__load_cfg *cfg, int argc, char **argv);

/* ---- the run ---- */

/* Connect, run, report (stdout and --json). Returns the exit status: 0,
 * or 1 when there were errors or nothing completed (the report is written
 * all the same). */
int cs__load_run(struct cs__load_cfg *cfg, int argc, char **argv);

/* The workers' results, merged; what cs__load_report() reports. */
struct cs__load_result {
	uint64_t ops, bytes, errors;
	uint64_t errors_by_kind[CS__ERR_KINDS];
	char first_error[128];
	struct cs__hist hist;
	int64_t server_cpu_ns; /* in the window; -1 unknown */
	uint64_t load_cpu_ns;  /* ours, in the window */
	uint64_t conns_open;   /* at the end */
	uint64_t handshakes, resumed; /* --tls: in the window */
	char negotiated[96];   /* --tls: what the first handshake settled on */
};

/* Print the summary on stdout and write --json (report.c). */
void cs__load_report(const struct cs__load_cfg *cfg, const struct cs__load_result *r,
		     int argc, char **argv);

/* ---- for the scenarios, from their worker thread ---- */

/* A request started at t0 (see pace.h) got its full response, carrying
 * bytes of payload, at now. */
void cs__worker_answered(struct cs__worker *w, uint64_t now, uint64_t t0, uint64_t bytes);

/* bytes went through a bulk stream at now (they are its ops). */
void cs__worker_moved(struct cs__worker *w, uint64_t now, uint64_t bytes);

/* Count an error of kind; the connection goes on. */
void cs__worker_error(struct cs__worker *w, enum cs__err kind, const char *why);

/* Count an error of kind on c and close c; the run goes on without it. */
void cs__conn_fail(struct cs__worker *w, struct cs__conn *c, enum cs__err kind,
		   const char *why);

/* The same for a failed socket call (errno). */
void cs__conn_fail_errno(struct cs__worker *w, struct cs__conn *c, int err);

/* Close c and open a fresh connection in its place, for a server that
 * closed it in good order (HTTP "Connection: close"), or a churn scenario
 * done with it. Requests in flight are forgotten; offer() comes once the
 * new connection is up (its handshake done). With tls_resume, the session
 * of c is what the new connection offers. */
void cs__conn_reconnect(struct cs__worker *w, struct cs__conn *c);

/* recv() and send() on c, through TLS when c has it: a count, 0 at the
 * end of the stream (recv), or -1 with errno (EAGAIN, a socket error, or
 * EPROTO for a TLS failure). Sends never raise SIGPIPE. */
ssize_t cs__conn_recv(struct cs__conn *c, void *buf, size_t len);
ssize_t cs__conn_send(struct cs__conn *c, const void *buf, size_t len);

/* Start an orderly close: TLS close_notify when c has TLS, then a FIN
 * (shutdown SHUT_WR). The server's end of the stream is read as usual. */
void cs__conn_shutdown(struct cs__conn *c);

#endif
