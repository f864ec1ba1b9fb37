/*
 * master.h - the master process of `cosockd --workers N`.
 *
 * The master forks N worker processes and then only supervises them: it
 * holds no loop, no Lua state and no client socket. Each worker runs the
 * whole daemon (its own dispatcher, Lua VM and pool threads) and opens its
 * own listeners with SO_REUSEPORT, so the kernel spreads connections.
 *
 * Rules:
 *  - A worker that dies after it was ready (killed, crashed, non-zero exit)
 *    is replaced: at once after a long life, then with a back-off that
 *    doubles while replacements keep dying soon after they start.
 *  - A worker that fails before it was ever ready, while no worker has ever
 *    been ready, is a start-up failure (a script error, a port in use): the
 *    master stops the others and exits with that worker's status.
 *  - A worker that exits 0 on its own has finished its script; it is not
 *    replaced. The master exits once no worker is left.
 *  - SIGTERM and SIGINT are forwarded and start the stop: nothing is
 *    replaced any more, and a worker still alive after the grace period is
 *    killed. SIGHUP is forwarded as it is.
 *  - Workers get SIGTERM when the master dies (PR_SET_PDEATHSIG).
 */
#ifndef CS_MASTER_H
#define CS_MASTER_H

struct cs_master_config {
	unsigned workers;
	/* Runs in each forked worker, numbered 1..workers; its return value
	 * is the worker's exit status. It calls cs_master_worker_ready() once
	 * its script ran and its listeners are open. */
	int (*run_worker)(unsigned worker, void *arg);
	void *arg;
	/* How long a stopping worker may drain before it is killed (ms). */
	unsigned stop_grace_ms;
};

/* Run the master until every worker has stopped. Returns the exit status
 * for the whole daemon: 0 after a requested stop or when every worker
 * finished, otherwise the status of the failure that ended it. */
int cs_master_run(const struct cs_master_config *cfg);

/* In a worker: tell the master this worker is ready. Once per worker; a
 * no-op outside a master. */
void cs_master_worker_ready(void);

/* The number of CPUs this process may run on (its affinity mask), for
 * --workers auto. At least 1. */
unsigned cs_master_cpu_count(void);

#endif
