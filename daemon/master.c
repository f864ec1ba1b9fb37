/*
 * master.c - fork the workers, replace the ones that die, forward signals
 * (see master.h for the rules).
 *
 * The master's loop is one poll(2) over a signalfd (SIGCHLD, SIGTERM,
 * SIGINT, SIGHUP are blocked and read from it, so no handler races the
 * bookkeeping) and the read end of each starting worker's ready pipe; its
 * timeout is the next scheduled restart or the stop deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "luabind.h" /* log priorities */
#include "master.h"

/* Restart back-off: a worker that dies within QUICK_DEATH_MS of its start
 * doubles the wait before the next attempt, from BACKOFF_MIN_MS up to
 * BACKOFF_MAX_MS; one that lived longer is replaced at once. */
#define QUICK_DEATH_MS 5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
/* Beyond the workers' own grace period, before they are killed. */
#define STOP_SLACK_MS 2000

struct worker {
	pid_t pid;               /* 0: not running */
	int ready_fd;            /* read end of its ready pipe, -1: none */
	bool ready;
	uint64_t started_ms;
	uint64_t restart_at_ms;  /* 0: no restart scheduled */
	unsigned quick_deaths;   /* consecutive deaths soon after starting */
	unsigned starts;
};

struct master {
	const struct cs_master_config *cfg;
	struct worker *w;        /* cfg->workers of them, index 0 = worker 1 */
	sigset_t old_mask;       /* restored in the workers */
	int sigfd;
	bool stopping;
	bool ever_ready;
	uint64_t kill_at_ms;     /* while stopping */
	int status;              /* the daemon's exit status so far */
};

/* In a worker: the write end of its ready pipe. */
static int worker_ready_fd = -1;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned cs_master_cpu_count(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

void cs_master_worker_ready(void)
{
	if (worker_ready_fd < 0)
		return;
	ssize_t r = write(worker_ready_fd, "R", 1);
	(void)r; /* the master gone: PR_SET_PDEATHSIG stops us anyway */
	close(worker_ready_fd);
	worker_ready_fd = -1;
}

/* The child side of a fork: shed the master's descriptors and signal
 * setup, then run the worker. Never returns. */
static void become_worker(struct master *m, unsigned idx, int ready_wr, pid_t master_pid)
{
	close(m->sigfd);
	for (unsigned i = 0; i < m->cfg->workers; i++)
		if (m->w[i].ready_fd >= 0)
			close(m->w[i].ready_fd);
	worker_ready_fd = ready_wr;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid) /* the master died before prctl */
		_exit(1);
	sigprocmask(SIG_SETMASK, &m->old_mask, NULL);
	int status = m->cfg->run_worker(idx + 1, m->cfg->arg);
	exit(status);
}

static int start_worker(struct master *m, unsigned idx)
{
	struct worker *w = &m->w[idx];
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: cannot start worker %u: pipe: %s", idx + 1, strerror(errno));
		return -1;
	}
	fflush(NULL); /* nothing buffered may be written twice */
	pid_t master_pid = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: cannot start worker %u: fork: %s", idx + 1, strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		become_worker(m, idx, p[1], master_pid);
	}
	close(p[1]);
	w->pid = pid;
	w->ready_fd = p[0];
	w->ready = false;
	w->started_ms = now_ms();
	w->restart_at_ms = 0;
	w->starts++;
	return 0;
}

static void signal_workers(struct master *m, int sig)
{
	for (unsigned i = 0; i < m->cfg->workers; i++)
		if (m->w[i].pid > 0)
			kill(m->w[i].pid, sig);
}

static void begin_stop(struct master *m, int sig)
{
	if (!m->stopping)
		cs_log(CS_LOG_NOTICE, "cosockd: master: %s: stopping the workers", strsignal(sig));
	m->stopping = true;
	m->kill_at_ms = now_ms() + m->cfg->stop_grace_ms + STOP_SLACK_MS;
	for (unsigned i = 0; i < m->cfg->workers; i++)
		m->w[i].restart_at_ms = 0;
	signal_workers(m, sig);
}

static void describe_status(int st, char *buf, size_t len)
{
	if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
}

/* Decide what a dead worker means: nothing, a restart, or the end. */
static void worker_died(struct master *m, unsigned idx, int st)
{
	struct worker *w = &m->w[idx];
	uint64_t lived = now_ms() - w->started_ms;
	char how[96];
	describe_status(st, how, sizeof(how));
	bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	/* killed by the stop signal we passed on before it set its handler */
	if (m->stopping && WIFSIGNALED(st) && (WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGINT))
		clean = true;
	pid_t pid = w->pid;
	w->pid = 0;
	if (w->ready_fd >= 0) {
		close(w->ready_fd);
		w->ready_fd = -1;
	}
	if (m->stopping) {
		if (!clean) {
			cs_log(CS_LOG_WARNING, "cosockd: master: worker %u (pid %d) %s while stopping", idx + 1, (int)pid, how);
			m->status = 1;
		}
		return;
	}
	if (clean) {
		cs_log(CS_LOG_INFO, "cosockd: master: worker %u (pid %d) finished", idx + 1, (int)pid);
		return;
	}
	if (!w->ready && !m->ever_ready) {
		cs_log(CS_LOG_ERR, "cosockd: master: worker %u (pid %d) %s before it was ready; giving up",
		       idx + 1, (int)pid, how);
		m->status = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		begin_stop(m, SIGTERM);
		return;
	}
	uint64_t delay = 0;
	if (lived < QUICK_DEATH_MS) {
		delay = (uint64_t)BACKOFF_MIN_MS << (w->quick_deaths < 7 ? w->quick_deaths : 7);
		if (delay > BACKOFF_MAX_MS)
			delay = BACKOFF_MAX_MS;
		w->quick_deaths++;
	} else {
		w->quick_deaths = 0;
	}
	cs_log(CS_LOG_WARNING, "cosockd: master: worker %u (pid %d) %s after %llu ms; restarting it in %llu ms",
	       idx + 1, (int)pid, how, (unsigned long long)lived, (unsigned long long)delay);
	w->restart_at_ms = now_ms() + delay; /* never 0: the clock is past boot */
}

static void reap(struct master *m)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (unsigned i = 0; i < m->cfg->workers; i++)
			if (m->w[i].pid == pid) {
				worker_died(m, i, st);
				break;
			}
	}
}

static void read_signals(struct master *m)
{
	struct signalfd_siginfo si;
	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap(m);
			break;
		case SIGTERM:
		case SIGINT:
			begin_stop(m, (int)si.ssi_signo);
			break;
		case SIGHUP:
			cs_log(CS_LOG_INFO, "cosockd: master: SIGHUP: passed on to the workers");
			signal_workers(m, SIGHUP);
			break;
		}
	}
}

static void read_ready(struct master *m, unsigned idx)
{
	struct worker *w = &m->w[idx];
	char c;
	ssize_t r = read(w->ready_fd, &c, 1);
	close(w->ready_fd);
	w->ready_fd = -1;
	if (r == 1) {
		w->ready = true;
		if (w->starts > 1)
			cs_log(CS_LOG_NOTICE, "cosockd: master: worker %u (pid %d) is serving again",
			       idx + 1, (int)w->pid);
		m->ever_ready = true;
	}
	/* r == 0: it died first; SIGCHLD tells the rest. */
}

/* Start what is due; returns the poll timeout until the next event. */
static int run_timers(struct master *m)
{
	uint64_t now = now_ms(), next = UINT64_MAX;
	if (m->stopping) {
		if (now >= m->kill_at_ms) {
			cs_log(CS_LOG_WARNING, "cosockd: master: workers still running after the grace period; killing them");
			signal_workers(m, SIGKILL);
			m->kill_at_ms = now + STOP_SLACK_MS;
		}
		next = m->kill_at_ms;
	}
	for (unsigned i = 0; i < m->cfg->workers; i++) {
		struct worker *w = &m->w[i];
		if (!w->restart_at_ms)
			continue;
		if (w->restart_at_ms <= now) {
			if (start_worker(m, i) < 0)
				w->restart_at_ms = now + BACKOFF_MAX_MS;
			else
				continue;
		}
		if (w->restart_at_ms < next)
			next = w->restart_at_ms;
	}
	if (next == UINT64_MAX)
		return -1;
	return next > now ? (int)(next - now) : 0;
}

static bool any_alive(const struct master *m)
{
	for (unsigned i = 0; i < m->cfg->workers; i++)
		if (m->w[i].pid > 0 || m->w[i].restart_at_ms)
			return true;
	return false;
}

int cs_master_run(const struct cs_master_config *cfg)
{
	struct master m = {.cfg = cfg, .sigfd = -1};
	m.w = calloc(cfg->workers, sizeof(*m.w));
	if (!m.w) {
		cs_log(CS_LOG_ERR, "cosockd: master: out of memory");
		return 1;
	}
	for (unsigned i = 0; i < cfg->workers; i++)
		m.w[i].ready_fd = -1;
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &m.old_mask);
	m.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m.sigfd < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: signalfd: %s", strerror(errno));
		free(m.w);
		return 1;
	}
	cs_log(CS_LOG_INFO, "cosockd: master (pid %d): starting %u workers", (int)getpid(), cfg->workers);
	for (unsigned i = 0; i < cfg->workers && !m.stopping; i++) {
		if (start_worker(&m, i) < 0) {
			m.status = 1;
			begin_stop(&m, SIGTERM);
		}
	}

	struct pollfd *pfd = calloc(cfg->workers + 1, sizeof(*pfd));
	unsigned *who = calloc(cfg->workers + 1, sizeof(*who));
	while (pfd && who && any_alive(&m)) {
		int timeout = run_timers(&m);
		nfds_t n = 0;
		pfd[n++] = (struct pollfd){.fd = m.sigfd, .events = POLLIN};
		for (unsigned i = 0; i < cfg->workers; i++)
			if (m.w[i].ready_fd >= 0) {
				who[n] = i;
				pfd[n++] = (struct pollfd){.fd = m.w[i].ready_fd, .events = POLLIN};
			}
		if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
			cs_log(CS_LOG_ERR, "cosockd: master: poll: %s", strerror(errno));
			signal_workers(&m, SIGKILL);
			m.status = 1;
			break;
		}
		for (nfds_t k = 1; k < n; k++)
			if (pfd[k].revents)
				read_ready(&m, who[k]);
		if (pfd[0].revents)
			read_signals(&m);
	}
	if (!pfd || !who) {
		cs_log(CS_LOG_ERR, "cosockd: master: out of memory");
		signal_workers(&m, SIGKILL);
		m.status = 1;
	}
	while (waitpid(-1, NULL, 0) > 0) /* after a failure: nobody left behind */
		;
	cs_log(CS_LOG_INFO, "cosockd: master: every worker has stopped");
	free(who);
	free(pfd);
	close(m.sigfd);
	free(m.w);
	sigprocmask(SIG_SETMASK, &m.old_mask, NULL);
	return m.status;
}
