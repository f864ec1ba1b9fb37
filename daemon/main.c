/*
 * main.c - the cosockd program: command line, resource limits, signals and
 * the worker's main loop (dispatcher poll, then resume ready cosockets).
 *
 *   cosockd [OPTIONS] [--config FILE]
 *   cosockd [OPTIONS] SCRIPT.lua [ARGS...]
 *   cosockd [OPTIONS] proxy --listen [ADDR:]PORT --upstream HOST:PORT
 *   cosockd [OPTIONS] echo --listen [ADDR:]PORT
 *
 * A configuration file (config.h) or --workers makes a master (master.c)
 * that forks the workers, each running what follows main()'s option
 * parsing on its own; a script without --workers runs in this process.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "listeners.h"
#include "log.h"
#include "luabind.h"
#include "master.h"
#include "notify.h"

#ifndef COSOCKD_CONFIG
#define COSOCKD_CONFIG "/etc/cosockd/cosockd.lua"
#endif
#ifndef COSOCKD_DATADIR
#define COSOCKD_DATADIR "/usr/share/cosockd"
#endif

/* Descriptors kept for things other than connections (logs, epoll, the
 * ring, eventfd, resolver sockets, script files). */
#define FD_RESERVE 64
#define SHUTDOWN_GRACE_MS 5000
#define RELOAD_GRACE_MS 30000
#define MAX_WORKERS 1024

extern const char app_echo[], app_proxy[];
extern const size_t app_echo_len, app_proxy_len;

/* Set by the handler on whichever thread the signal lands (a pool thread
 * too): lock-free atomics, so both async-signal-safe and race-free. */
static atomic_int stop_signal, drain_signal, hup_signal;
static cs_loop *signal_loop;

struct options {
	enum cs_backend backend;
	long max_conns;
	long threads;
	long workers;        /* 0: no master, one process */
	const char *config;  /* --config, or the default when no script is given */
	bool check;          /* --check: check, run nothing */
	/* given on the command line, so the configuration file does not override */
	bool backend_set, max_conns_set, threads_set, workers_set;
	long shutdown_grace_ms, reload_grace_ms;
	struct cs_config conf;
	/* bundled apps */
	const char *app;
	char listen_addr[256];
	int listen_port;
	char upstream_host[256];
	int upstream_port;
	long connect_timeout_ms;
	const char *tls_cert, *tls_key; /* proxy: terminate TLS from clients */
	bool upstream_tls;               /* proxy: TLS to the upstream */
	const char *upstream_ca;         /* ... verified against this CA */
	const char *state_dir;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cosockd [OPTIONS] [--config FILE]\n"
		"       cosockd [OPTIONS] SCRIPT.lua [ARGS...]\n"
		"       cosockd [OPTIONS] proxy --listen [ADDR:]PORT --upstream HOST:PORT [--connect-timeout MS]\n"
		"                         [--tls-cert FILE --tls-key FILE] [--upstream-tls [--upstream-ca FILE]]\n"
		"       cosockd [OPTIONS] echo --listen [ADDR:]PORT\n"
		"\n"
		"Runs Lua scripts written for the ba.socket cosocket API.\n"
		"\n"
		"Without a script, runs the configuration file (default " COSOCKD_CONFIG ").\n"
		"\n"
		"options:\n"
		"  -c, --config=FILE           run the configuration FILE: its settings, then its scripts in every\n"
		"                              worker, under a master (SIGHUP reloads); options given here win\n"
		"  --check                     check the configuration (or SCRIPT) and compile its scripts, then exit\n"
		"  --backend=auto|uring|epoll  dispatcher backend (default auto: io_uring if usable)\n"
		"  --max-connections=N         connection slots (default 262144; bounded by RLIMIT_NOFILE)\n"
		"  --threads=N                 Lua pool threads for ba.thread.run, started on demand (default 8)\n"
		"  --workers=N|auto            run N worker processes under a master that restarts them and\n"
		"                              keeps the listening sockets they share. auto: one per CPU this\n"
		"                              process may use. Default: one process, no master, or the\n"
		"                              configuration's `workers`; `proxy` defaults to auto\n"
		"  --state-dir=DIR             where ba.openio(\"vm\") keeps its files (the generated certificate);\n"
		"                              default $STATE_DIRECTORY, else $XDG_STATE_HOME/cosockd,\n"
		"                              else ~/.local/state/cosockd, else /var/lib/cosockd\n"
		"\n"
		"proxy TLS:\n"
		"  --tls-cert FILE --tls-key FILE  clients connect with TLS (PEM certificate chain and key)\n"
		"  --upstream-tls              connect to the upstream with TLS; without --upstream-ca its\n"
		"                              certificate is not verified\n"
		"  --upstream-ca FILE          verify the upstream against the CA certificates in FILE\n"
		"  -h, --help                  this text\n"
		"  -V, --version               print the version\n");
}

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "cosockd: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (try cosockd --help)\n");
	exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		die_usage(what, s);
	return v;
}

/* Split "HOST:PORT" / "[v6addr]:PORT" at the last colon: the host (without
 * brackets) goes to host, and the port text is returned. Without a colon
 * the host is empty and the whole of s is the port. */
static const char *split_hostport(const char *s, char *host, size_t size, const char *what)
{
	const char *colon = strrchr(s, ':');
	host[0] = 0;
	if (!colon)
		return s;
	const char *h = s;
	size_t n = (size_t)(colon - s);
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (n >= size)
		die_usage(what, s);
	memcpy(host, h, n);
	host[n] = 0;
	return colon + 1;
}

static void parse_listen(const char *s, struct options *o)
{
	const char *port = split_hostport(s, o->listen_addr, sizeof(o->listen_addr), "--listen address too long: %s");
	o->listen_port = (int)parse_long(port, 0, 65535, "--listen wants [ADDR:]PORT, got '%s'");
}

static void parse_upstream(const char *s, struct options *o)
{
	const char *port = split_hostport(s, o->upstream_host, sizeof(o->upstream_host), "--upstream host too long: %s");
	if (!o->upstream_host[0])
		die_usage("--upstream wants HOST:PORT, got '%s'", s);
	o->upstream_port = (int)parse_long(port, 1, 65535, "--upstream port must be 1-65535, got '%s'");
}

/* Options of a bundled app, after its name. */
static void parse_app(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"upstream", required_argument, NULL, 'u'},
		{"connect-timeout", required_argument, NULL, 't'},
		{"tls-cert", required_argument, NULL, 'c'},
		{"tls-key", required_argument, NULL, 'k'},
		{"upstream-tls", no_argument, NULL, 'T'},
		{"upstream-ca", required_argument, NULL, 'A'},
		{NULL, 0, NULL, 0},
	};
	bool proxy = !strcmp(o->app, "proxy");
	o->listen_port = -1;
	o->connect_timeout_ms = 1000;
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			parse_listen(optarg, o);
			break;
		case 'u':
			if (!proxy)
				die_usage("%s takes no --upstream", o->app);
			parse_upstream(optarg, o);
			break;
		case 't':
			if (!proxy)
				die_usage("%s takes no --connect-timeout", o->app);
			o->connect_timeout_ms = parse_long(optarg, 1, 600000, "--connect-timeout wants milliseconds, got '%s'");
			break;
		case 'c':
		case 'k':
		case 'T':
		case 'A':
			if (!proxy)
				die_usage("%s takes no TLS options", o->app);
			if (ch == 'c')
				o->tls_cert = optarg;
			else if (ch == 'k')
				o->tls_key = optarg;
			else if (ch == 'A')
				o->upstream_ca = optarg;
			o->upstream_tls |= ch == 'T' || ch == 'A';
			break;
		default:
			die_usage("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (o->listen_port < 0)
		die_usage("%s needs --listen [ADDR:]PORT", o->app);
	if (proxy && !o->upstream_host[0])
		die_usage("%s needs --upstream HOST:PORT", o->app);
	if (!o->tls_cert != !o->tls_key)
		die_usage("%s: --tls-cert and --tls-key go together", o->app);
}

/* Returns the index of the script (or app name) in argv. */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"backend", required_argument, NULL, 'b'},
		{"max-connections", required_argument, NULL, 'm'},
		{"threads", required_argument, NULL, 't'},
		{"workers", required_argument, NULL, 'w'},
		{"state-dir", required_argument, NULL, 'S'},
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	o->backend = CS_BACKEND_AUTO;
	o->max_conns = 262144;
	opterr = 0; /* our own one-line messages */
	int ch;
	while ((ch = getopt_long(argc, argv, "+hVc:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			if (!strcmp(optarg, "auto"))
				o->backend = CS_BACKEND_AUTO;
			else if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring"))
				o->backend = CS_BACKEND_URING;
			else if (!strcmp(optarg, "epoll"))
				o->backend = CS_BACKEND_EPOLL;
			else
				die_usage("--backend must be auto, uring or epoll, not '%s'", optarg);
			o->backend_set = true;
			break;
		case 'm':
			o->max_conns = parse_long(optarg, 1, 1 << 22, "--max-connections must be 1-4194304, got '%s'");
			o->max_conns_set = true;
			break;
		case 't':
			o->threads = parse_long(optarg, 1, 1024, "--threads must be 1-1024, got '%s'");
			o->threads_set = true;
			break;
		case 'w':
			o->workers = !strcmp(optarg, "auto") ? (long)cs_master_cpu_count()
				   : parse_long(optarg, 1, MAX_WORKERS, "--workers must be auto or 1-1024, got '%s'");
			o->workers_set = true;
			break;
		case 'c':
			o->config = optarg;
			break;
		case 'C':
			o->check = true;
			break;
		case 'S':
			o->state_dir = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("cosockd %s (%s)\n", COSOCKD_VERSION, cs_vm_lua_release());
			exit(0);
		default:
			die_usage("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	o->shutdown_grace_ms = SHUTDOWN_GRACE_MS;
	o->reload_grace_ms = RELOAD_GRACE_MS;
	if (o->config && optind < argc)
		die_usage("--config runs the scripts its file names: unexpected '%s'", argv[optind]);
	if (optind >= argc) {
		if (!o->config)
			o->config = COSOCKD_CONFIG;
		return optind;
	}
	const char *first = argv[optind];
	if (!strcmp(first, "proxy") || !strcmp(first, "echo")) {
		o->app = first;
		parse_app(argc - optind, argv + optind, o);
		if (!o->workers && !strcmp(first, "proxy"))
			o->workers = (long)cs_master_cpu_count();
	}
	return optind;
}

/* Raise the descriptor limit as far as the hard limit allows and size the
 * slot table to what the process can really hold. */
static uint32_t connection_capacity(long wanted)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return (uint32_t)wanted;
	rlim_t need = (rlim_t)wanted + FD_RESERVE;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	long cap = rl.rlim_cur > FD_RESERVE ? (long)(rl.rlim_cur - FD_RESERVE) : 1;
	if (cap < wanted) {
		cs_log(CS_LOG_NOTICE,
		       "cosockd: connection capacity is %ld, not the %ld asked for: RLIMIT_NOFILE is %llu (hard limit %llu)",
		       cap, wanted, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
		return (uint32_t)cap;
	}
	return (uint32_t)wanted;
}

static void on_signal(int sig)
{
	if (sig == SIGQUIT)
		drain_signal = sig;
	else if (sig == SIGHUP)
		hup_signal = sig;
	else
		stop_signal = sig;
	if (signal_loop)
		cs_loop_wake(signal_loop);
}

static void install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* a master's worker starts with these blocked (master.c) */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
}

static void preload_apps(cs_vm *vm)
{
	cs_vm_preload(vm, "cosockd.echo", app_echo, app_echo_len);
	cs_vm_preload(vm, "cosockd.proxy", app_proxy, app_proxy_len);
}

/* A configuration's scripts, in order; a bundled app is a one-line script
 * that starts its module. */
static int run_script(cs_vm *vm, const struct options *o, int argc, char **argv, int idx)
{
	if (o->config) {
		for (unsigned i = 0; i < o->conf.nscripts; i++) {
			const struct cs_config_script *sc = &o->conf.scripts[i];
			if (cs_vm_run_file(vm, sc->path, sc->argc, sc->argv, 0) < 0)
				return -1;
		}
		return 0;
	}
	if (!o->app)
		return cs_vm_run_file(vm, argv[idx], argc, argv, idx);
	char chunk[1024];
	if (!strcmp(o->app, "proxy"))
		snprintf(chunk, sizeof(chunk),
			 "local a = {...} "
			 "require'cosockd.proxy'.start{intf=a[1], port=%d, upstream_host=a[2], upstream_port=%d, "
			 "connect_timeout=%ld, tls_cert=a[3], tls_key=a[4], upstream_tls=%s, upstream_ca=a[5]}",
			 o->listen_port, o->upstream_port, o->connect_timeout_ms, o->upstream_tls ? "true" : "false");
	else
		snprintf(chunk, sizeof(chunk), "require'cosockd.echo'.start{intf=..., port=%d}", o->listen_port);
	char *app_argv[] = {argv[0],
			    (char *)o->app,
			    (char *)o->listen_addr,
			    (char *)o->upstream_host,
			    (char *)(o->tls_cert ? o->tls_cert : ""),
			    (char *)(o->tls_key ? o->tls_key : ""),
			    (char *)(o->upstream_ca ? o->upstream_ca : "")};
	return cs_vm_run_chunk(vm, chunk, strlen(chunk), o->app, 7, app_argv, 1);
}

/* Heartbeats from the loop itself: to the master, or, in a single process,
 * straight to systemd, so a stalled loop stops them. */
struct beat {
	unsigned every_ms;   /* 0: none */
	uint64_t next;
	bool to_master;
	bool watchdog;
};

static void beat_init(struct beat *b, bool under_master)
{
	*b = (struct beat){.to_master = under_master};
	b->every_ms = under_master ? cs_master_beat_ms() : 0;
	if (!under_master && cs_notify_enabled()) {
		uint64_t wd = cs_notify_watchdog_ms();
		b->watchdog = wd > 0;
		b->every_ms = wd && wd / 2 < 1000 ? (unsigned)(wd / 2 ? wd / 2 : 1) : 1000;
	}
	b->next = 0;
}

static void beat(struct beat *b, cs_vm *vm, uint64_t now)
{
	if (!b->every_ms || now < b->next)
		return;
	b->next = now + b->every_ms;
	unsigned conns = cs_vm_connections(vm);
	if (b->to_master) {
		cs_master_worker_beat(conns);
		return;
	}
	if (b->watchdog)
		cs_notify("WATCHDOG=1");
	char text[64];
	snprintf(text, sizeof(text), "%u connection%s", conns, conns == 1 ? "" : "s");
	cs_notify_status(text);
}

/* The worker's loop: resume what is ready, then wait for the dispatcher.
 * A stop (signal or cosockd.exit) closes listeners and wakes every waiting
 * cosocket with "sysshutdown"; queued bytes then get a grace period. A
 * drain (SIGQUIT) first lets established connections finish, for up to
 * the reload grace period, then stops. */
static int serve(cs_loop *loop, cs_vm *vm, const struct options *o, bool under_master)
{
	bool stopping = false, draining = false;
	uint64_t deadline = 0;
	int code = 0;
	struct beat b;
	beat_init(&b, under_master);
	for (;;) {
		bool more = cs_vm_run_ready(vm);
		uint64_t now = cs_loop_now(loop);
		beat(&b, vm, now);
		if (hup_signal) {
			hup_signal = 0;
			if (!under_master)
				cs_log(CS_LOG_NOTICE, "cosockd: SIGHUP: reloading needs a master (--config or --workers); ignored");
		}
		if (!stopping && !draining && drain_signal) {
			draining = true;
			deadline = now + (uint64_t)o->reload_grace_ms;
			cs_vm_drain(vm);
			cs_master_worker_draining(); /* nothing is accepted here any more */
			cs_log(CS_LOG_NOTICE, "cosockd: SIGQUIT: draining: no new connections; %u open, up to %ld ms",
			       cs_vm_connections(vm), o->reload_grace_ms);
			continue;
		}
		bool drained = false;
		if (draining && !stopping) {
			unsigned open = cs_vm_connections(vm);
			if (open == 0) {
				cs_log(CS_LOG_INFO, "cosockd: drained: no connection left");
				drained = true;
			} else if (now >= deadline) {
				cs_log(CS_LOG_WARNING, "cosockd: drain grace period over with %u connection%s open; stopping",
				       open, open == 1 ? "" : "s");
				drained = true;
			}
		}
		if (!stopping && (stop_signal || drained || cs_vm_exit_requested(vm, &code))) {
			if (stop_signal)
				cs_log(CS_LOG_NOTICE, "cosockd: %s: shutting down", strsignal(stop_signal));
			if (!under_master)
				cs_notify("STOPPING=1");
			stopping = true;
			deadline = now + (uint64_t)o->shutdown_grace_ms;
			cs_vm_shutdown(vm);
			continue;
		}
		if (!more && !cs_vm_busy(vm))
			break;
		int timeout = more ? 0 : -1;
		uint64_t wake = stopping || draining ? deadline : 0;
		if (b.every_ms && (!wake || b.next < wake))
			wake = b.next;
		if (draining && !stopping && (!wake || now + 100 < wake))
			wake = now + 100; /* connections end without waking us */
		if (stopping && now >= deadline) {
			cs_log(CS_LOG_WARNING, "cosockd: grace period over, closing what is left");
			break;
		}
		if (wake && timeout != 0) {
			uint64_t left = wake > now ? wake - now : 0;
			if (timeout < 0 || left < (uint64_t)timeout)
				timeout = (int)left;
		}
		int r = cs_loop_poll(loop, timeout);
		if (r < 0) {
			cs_log(CS_LOG_ERR, "cosockd: dispatcher failed: %s", strerror(-r));
			return 1;
		}
	}
	return code;
}

struct worker_args {
	struct options *o;
	struct options cli;  /* the command line alone, for reloads */
	uint32_t capacity;
	int argc;
	char **argv;
	int idx; /* of the script or app name in argv */
	cs_listeners *listeners;
};

/* One worker: its dispatcher, its Lua state, the script, then the loop.
 * worker is 1..N under a master, 0 without one. */
static int run_worker(unsigned worker, void *arg)
{
	const struct worker_args *a = arg;
	const struct options *o = a->o;
	char tag[32] = "";
	if (worker) {
		snprintf(tag, sizeof(tag), "[worker %u] ", worker);
		cs_log_set_tag(tag);
	}
	struct cs_loop_config cfg = {.backend = o->backend, .max_conns = a->capacity};
	cs_loop *loop;
	int r = cs_loop_create(&cfg, &cs_vm_conn_ops, NULL, &loop);
	if (r < 0) {
		cs_log(CS_LOG_ERR, "cosockd: cannot start the %s dispatcher: %s",
		       o->backend == CS_BACKEND_URING ? "io_uring" : o->backend == CS_BACKEND_EPOLL ? "epoll" : "",
		       strerror(-r));
		return 1;
	}
	if (worker <= 1)
		cs_log(CS_LOG_INFO, "cosockd %s: dispatcher backend %s%s, %u connection slots%s", COSOCKD_VERSION,
		       cs_loop_backend(loop),
		       o->backend == CS_BACKEND_AUTO && strcmp(cs_loop_backend(loop), "io_uring") ? " (io_uring unavailable)" : "",
		       a->capacity, worker ? " per worker" : "");

	struct cs_listen_source local = {.open = cs_listeners_open_local, .ctx = a->listeners};
	struct cs_vm_config vcfg = {
		.loop = loop,
		.log = cs_log_line,
		.threads = (unsigned)o->threads,
		.worker = worker,
		.workers = worker ? (unsigned)o->workers : 0,
		.state_dir = o->state_dir,
		.listen = worker ? &cs_master_listen_source : a->listeners ? &local : NULL,
	};
	cs_vm *vm;
	if (cs_vm_create(&vcfg, &vm) < 0) {
		cs_log(CS_LOG_ERR, "cosockd: cannot create the Lua state");
		cs_loop_destroy(loop);
		return 1;
	}
	signal_loop = loop;
	install_signals();
	preload_apps(vm);

	int code = run_script(vm, o, a->argc, a->argv, a->idx) < 0 ? 1 : 0;
	if (code == 0) {
		if (worker) {
			cs_master_worker_ready();
		} else {
			if (a->listeners)
				cs_listeners_warn_unadopted(a->listeners);
			cs_notify("READY=1");
		}
		code = serve(loop, vm, o, worker > 0);
		int asked;
		if (worker && cs_vm_exit_requested(vm, &asked))
			cs_master_worker_exit(asked);
	} else {
		cs_vm_shutdown(vm);
	}
	cs_vm_destroy(vm);
	signal_loop = NULL;
	cs_loop_destroy(loop);
	return code;
}

/* Settings from the configuration file where the command line gave none. */
static void apply_config(struct options *o)
{
	const struct cs_config *c = &o->conf;
	if (!o->backend_set && c->backend >= 0)
		o->backend = (enum cs_backend)c->backend;
	if (!o->max_conns_set && c->max_conns)
		o->max_conns = c->max_conns;
	if (!o->threads_set && c->threads)
		o->threads = c->threads;
	if (!o->workers_set)
		o->workers = c->workers < 0 ? (long)cs_master_cpu_count() : c->workers ? c->workers : 1;
	if (!o->state_dir && c->state_dir)
		o->state_dir = c->state_dir;
	if (c->shutdown_grace_ms >= 0)
		o->shutdown_grace_ms = c->shutdown_grace_ms;
	if (c->reload_grace_ms >= 0)
		o->reload_grace_ms = c->reload_grace_ms;
}

/* Read the configuration file into o (the command line already there). */
static int load_config(struct options *o)
{
	char err[1024];
	if (cs_config_load(o->config, COSOCKD_DATADIR, &o->conf, err, sizeof(err)) < 0) {
		cs_log(CS_LOG_ERR, "cosockd: %s", err);
		return -1;
	}
	apply_config(o);
	return 0;
}

static void report_line(const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "cosockd: %s\n", line);
}

static void log_report_line(const char *line, void *arg)
{
	(void)arg;
	cs_log(CS_LOG_ERR, "cosockd: %s", line);
}

/* --check: read, resolve and compile; run nothing, bind nothing. */
static int check(struct options *o, int argc, char **argv, int idx)
{
	char err[1024];
	const char *what = o->config ? o->config : o->app ? o->app : argv[idx];
	bool bad = false;
	if (o->config) {
		bad = cs_config_load_report(o->config, COSOCKD_DATADIR, &o->conf, report_line, NULL) > 0 ||
		      cs_config_compile(&o->conf, report_line, NULL) > 0;
		cs_config_free(&o->conf);
	} else if (!o->app && cs_config_compile_script(argv[idx], err, sizeof(err)) < 0) {
		fprintf(stderr, "cosockd: %s\n", err);
		bad = true;
	}
	(void)argc;
	if (!bad)
		printf("cosockd: %s: configuration ok\n", what);
	return bad ? 1 : 0;
}

/* SIGHUP in the master: the configuration again, over the command line. */
static int reload_config(struct cs_master_config *mc)
{
	struct worker_args *a = mc->arg;
	struct options next = a->cli;
	memset(&next.conf, 0, sizeof(next.conf));
	if (load_config(&next) < 0)
		return -1;
	int bad = cs_config_compile(&next.conf, log_report_line, NULL);
	if (bad > 0) {
		cs_log(CS_LOG_ERR, "cosockd: %d script%s of %s do%s not compile", bad, bad == 1 ? "" : "s",
		       next.config, bad == 1 ? "es" : "");
		cs_config_free(&next.conf);
		return -1;
	}
	cs_config_free(&a->o->conf);
	*a->o = next;
	a->capacity = connection_capacity(next.max_conns);
	mc->workers = (unsigned)next.workers;
	mc->stop_grace_ms = (unsigned)next.shutdown_grace_ms;
	mc->reload_grace_ms = (unsigned)next.reload_grace_ms;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {0};
	int idx = parse_options(argc, argv, &o);
	if (o.check)
		return check(&o, argc, argv, idx);
	struct worker_args a = {.o = &o, .cli = o, .argc = argc, .argv = argv, .idx = idx};
	if (o.config && load_config(&o) < 0)
		return 1;
	a.capacity = connection_capacity(o.max_conns);
	a.listeners = cs_listeners_create();
	int status;
	if (!o.workers) {
		status = run_worker(0, &a);
	} else {
		signal(SIGPIPE, SIG_IGN);
		struct cs_master_config mc = {
			.workers = (unsigned)o.workers,
			.run_worker = run_worker,
			.reload = o.config ? reload_config : NULL,
			.arg = &a,
			.stop_grace_ms = (unsigned)o.shutdown_grace_ms,
			.reload_grace_ms = (unsigned)o.reload_grace_ms,
			.listeners = a.listeners,
		};
		status = cs_master_run(&mc);
		a.listeners = mc.listeners;
	}
	cs_listeners_destroy(a.listeners);
	cs_config_free(&o.conf);
	return status;
}
