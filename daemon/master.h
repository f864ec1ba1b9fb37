/*
 * master.h - the master process: workers, generations, reload, and what
 * systemd is told.
 *
 * The master forks N worker processes and then only supervises them: it
 * holds no loop, no Lua state and no client socket. Each worker runs the
 * whole daemon (its own dispatcher, Lua VM and pool threads). Workers get
 * their listening sockets from the master (listeners.h) over a private
 * SOCK_SEQPACKET channel, which also carries "ready" and the heartbeats
 * their loops send.
 *
 * Rules:
 *  - A worker that dies after it was ready (killed, crashed, non-zero exit)
 *    is replaced: at once after a long life, then with a back-off that
 *    doubles while replacements keep dying soon after they start.
 *  - A worker that fails before it was ever ready, while no worker has ever
 *    been ready, is a start-up failure (a script error, a port in use): the
 *    master stops the others and exits with that worker's status.
 *  - A worker that exits 0 on its own has finished its script; it is not
 *    replaced. The master exits once no worker is left. A worker whose
 *    script calls cosockd.exit(code) stops the whole daemon with code.
 *  - SIGHUP reloads: a new generation of workers starts on the same
 *    listening sockets; once all of it is ready, the old workers get SIGQUIT
 *    (stop accepting, finish their connections) and are killed if still
 *    there after the reload grace period (a new generation not ready
 *    within 60 s fails the reload). READY=1 follows once every old
 *    worker said it accepts nothing more (or died, or a second passed), so
 *    a connection made after it meets the new scripts. If a new worker fails before it
 *    is ready, the reload fails and the old generation goes on serving. A
 *    SIGHUP during a reload runs once that reload is over.
 *  - With a watchdog (WATCHDOG_USEC), a ready worker whose heartbeat is
 *    older than half of it is stalled: killed, then replaced as above. The
 *    master pings systemd only while no worker is stalled.
 *  - SIGTERM and SIGINT are forwarded and start the stop: nothing is
 *    replaced any more, and a worker still alive after the grace period is
 *    killed.
 *  - Workers get SIGTERM when the master dies (PR_SET_PDEATHSIG).
 */
#ifndef CS_MASTER_H
#define CS_MASTER_H

#include <stdint.h>

#include "listeners.h"

struct cs_master_config {
	unsigned workers;
	/* Runs in each forked worker, numbered 1..workers; its return value
	 * is the worker's exit status. It calls cs_master_worker_ready() once
	 * its script ran and its listeners are open. */
	int (*run_worker)(unsigned worker, void *arg);
	/* On SIGHUP, in the master, before the new generation forks: re-read
	 * what the workers run and update this config (workers, grace
	 * periods). Returns 0, or -1 after logging why, to keep the running
	 * generation. NULL: the new generation runs what the old one ran. */
	int (*reload)(struct cs_master_config *cfg);
	void *arg;
	/* How long a stopping worker may drain before it is killed (ms). */
	unsigned stop_grace_ms;
	/* How long a reload's old workers may drain before they are killed. */
	unsigned reload_grace_ms;
	/* systemd's sockets; workers' listening sockets are kept here. */
	cs_listeners *listeners;
};

/* Run the master until every worker has stopped. Returns the exit status
 * for the whole daemon: 0 after a requested stop or when every worker
 * finished, otherwise the status of the failure that ended it. */
int cs_master_run(struct cs_master_config *cfg);

/* In a worker: tell the master this worker is ready. Once per worker; a
 * no-op outside a master. */
void cs_master_worker_ready(void);

/* In a worker: tell the master that this worker, told to drain, accepts
 * nothing any more (the master says READY=1 after a reload only then). A
 * no-op outside a master. */
void cs_master_worker_draining(void);

/* In a worker whose script called cosockd.exit(code): the whole daemon
 * stops with that status. A no-op outside a master. */
void cs_master_worker_exit(int code);

/* In a worker: the heartbeat, with the worker's open connections. Sent from
 * the loop between polls every cs_master_beat_ms(); never blocks. */
void cs_master_worker_beat(uint32_t connections);

/* In a worker: how often to beat (ms); 0 outside a master. */
unsigned cs_master_beat_ms(void);

/* In a worker: the listen source that asks the master (see luabind.h). */
extern const struct cs_listen_source cs_master_listen_source;

/* The number of CPUs this process may run on (its affinity mask), for
 * --workers auto. At least 1. */
unsigned cs_master_cpu_count(void);

#endif
