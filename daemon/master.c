/*
 * master.c - fork the workers, replace the ones that die, reload them in
 * generations, tell systemd (see master.h for the rules).
 *
 * The master's loop is one poll(2) over a signalfd (SIGCHLD, SIGTERM,
 * SIGINT, SIGHUP are blocked and read from it, so no handler races the
 * bookkeeping) and each worker's channel; its timeout is the next of: a
 * scheduled restart, a kill deadline, the watchdog check, the status line.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "luabind.h" /* log priorities */
#include "master.h"
#include "notify.h"

/* Restart back-off: a worker that dies within QUICK_DEATH_MS of its start
 * doubles the wait before the next attempt, from BACKOFF_MIN_MS up to
 * BACKOFF_MAX_MS; one that lived longer is replaced at once. */
#define QUICK_DEATH_MS 5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
/* Beyond the workers' own grace period, before they are killed. */
#define STOP_SLACK_MS 2000
/* Heartbeats and the STATUS line, without a watchdog asking for more. */
#define BEAT_MS 1000
#define STATUS_MS 1000
/* How long READY=1 after a reload waits for the old workers to say they
 * stopped accepting. */
#define DRAIN_ACK_MS 1000
/* How long a reload's new generation may take to become ready. */
#define RELOAD_START_MS 60000

/* The channel between the master and one worker (SOCK_SEQPACKET). */
enum msg_type { MSG_READY = 1, MSG_BEAT, MSG_LISTEN, MSG_LISTEN_REPLY, MSG_DRAINING, MSG_EXIT };

struct msg {
	uint8_t type;
	uint8_t any_addr;
	uint8_t shared;
	uint8_t sock_type; /* LISTEN: SOCK_STREAM or SOCK_DGRAM */
	int32_t value; /* BEAT: connections; LISTEN_REPLY: 0 or -errno */
	uint32_t addrlen;
	struct sockaddr_storage addr;
	char fdname[64];
};

struct worker {
	pid_t pid;
	unsigned slot;          /* 1..workers of its generation */
	unsigned gen;
	int chan;               /* -1: closed */
	bool ready;
	bool retiring;          /* told to drain (or to stop): not replaced */
	bool quit_sent;         /* told to drain: its answer delays READY=1 */
	bool exit_asked;        /* its script called cosockd.exit(): its status is ours */
	bool drain_acked;       /* ... and it answered */
	uint64_t started_ms, beat_ms, kill_at_ms;
	uint32_t conns;
};

/* Restart bookkeeping of the serving generation's slots. */
struct slot {
	uint64_t restart_at_ms; /* 0: no restart scheduled */
	unsigned quick_deaths;
	unsigned starts;
};

struct master {
	struct cs_master_config *cfg;
	struct worker *w;
	unsigned nw, capw;
	struct slot *slots;      /* of the serving generation */
	unsigned nslots;
	unsigned gen;            /* the serving generation */
	unsigned next_gen;
	unsigned pending;        /* the generation a reload is starting; 0: none */
	unsigned pending_slots;
	bool reload_queued;
	uint64_t ready_at_ms;    /* a reload's READY=1 is due by then; 0: none */
	uint64_t pending_until_ms; /* the reload fails if not ready by then */
	sigset_t old_mask;       /* restored in the workers */
	int sigfd;
	bool stopping;
	bool ever_ready;
	uint64_t kill_at_ms;     /* while stopping */
	uint64_t watchdog_ms, next_ping_ms, next_status_ms;
	int status;              /* the daemon's exit status so far */
};

/* In a worker: its end of the channel, and how often its loop beats. */
static int worker_chan = -1;
static unsigned worker_beat_ms;
static pthread_mutex_t chan_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* ---- the worker's side of the channel ------------------------------------ */

static void worker_send(uint8_t type, int32_t value)
{
	if (worker_chan < 0)
		return;
	struct msg m = {.type = type, .value = value};
	pthread_mutex_lock(&chan_lock);
	ssize_t r = send(worker_chan, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL);
	pthread_mutex_unlock(&chan_lock);
	(void)r; /* a full channel drops a beat; the master gone: PDEATHSIG */
}

void cs_master_worker_ready(void)
{
	worker_send(MSG_READY, 0);
}

void cs_master_worker_draining(void)
{
	worker_send(MSG_DRAINING, 0);
}

void cs_master_worker_exit(int code)
{
	worker_send(MSG_EXIT, code);
}

void cs_master_worker_beat(uint32_t connections)
{
	worker_send(MSG_BEAT, (int32_t)(connections > INT32_MAX ? INT32_MAX : connections));
}

unsigned cs_master_beat_ms(void)
{
	return worker_chan >= 0 ? worker_beat_ms : 0;
}

/* Ask the master for a listening socket and wait for its answer. */
static int ask_master(void *ctx, const struct cs_listen_req *req, bool *shared)
{
	struct msg m = {.type = MSG_LISTEN, .any_addr = req->any_addr, .sock_type = (uint8_t)req->type,
			.addrlen = req->addrlen};
	if (req->addrlen > sizeof(m.addr))
		return -EAFNOSUPPORT;
	if (req->fdname && strlen(req->fdname) >= sizeof(m.fdname))
		return -ENAMETOOLONG;
	memcpy(&m.addr, req->addr, req->addrlen);
	if (req->fdname)
		strcpy(m.fdname, req->fdname);
	pthread_mutex_lock(&chan_lock);
	int fd = -EPIPE;
	if (send(worker_chan, &m, sizeof(m), MSG_NOSIGNAL) == (ssize_t)sizeof(m)) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		ssize_t n;
		do
			n = recvmsg(worker_chan, &mh, MSG_CMSG_CLOEXEC);
		while (n < 0 && errno == EINTR);
		struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
		if (n != (ssize_t)sizeof(m) || m.type != MSG_LISTEN_REPLY)
			fd = -EPROTO;
		else if (m.value < 0)
			fd = m.value;
		else if (c && c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
		else
			fd = -EPROTO;
		*shared = m.shared;
	}
	pthread_mutex_unlock(&chan_lock);
	(void)ctx;
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

const struct cs_listen_source cs_master_listen_source = {.open = ask_master};

/* ---- workers ------------------------------------------------------------- */

static struct worker *find_pid(struct master *m, pid_t pid)
{
	for (unsigned i = 0; i < m->nw; i++)
		if (m->w[i].pid == pid)
			return &m->w[i];
	return NULL;
}

/* The child side of a fork: shed the master's descriptors and signal
 * setup, then run the worker. Never returns. */
static void become_worker(struct master *m, unsigned slot, int chan, pid_t master_pid)
{
	close(m->sigfd);
	for (unsigned i = 0; i < m->nw; i++)
		if (m->w[i].chan >= 0)
			close(m->w[i].chan);
	/* the kept sockets come back through the channel when a script binds;
	 * copies held here would keep retired ones listening */
	cs_listeners_destroy(m->cfg->listeners);
	m->cfg->listeners = NULL;
	worker_chan = chan;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid) /* the master died before prctl */
		_exit(1);
	cs_notify_forget();
	/* SIGQUIT and SIGHUP stay blocked until the worker's handlers are in
	 * (install_signals): a drain asked for meanwhile waits, not lost. */
	sigset_t mask = m->old_mask;
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	signal(SIGQUIT, SIG_DFL);
	exit(m->cfg->run_worker(slot, m->cfg->arg));
}

static int start_worker(struct master *m, unsigned slot, unsigned gen)
{
	if (m->nw == m->capw) {
		unsigned cap = m->capw ? 2 * m->capw : 8;
		struct worker *w = realloc(m->w, cap * sizeof(*w));
		if (!w) {
			cs_log(CS_LOG_ERR, "cosockd: master: cannot start worker %u: out of memory", slot);
			return -1;
		}
		m->w = w;
		m->capw = cap;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: cannot start worker %u: socketpair: %s", slot, strerror(errno));
		return -1;
	}
	fflush(NULL); /* nothing buffered may be written twice */
	pid_t master_pid = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: cannot start worker %u: fork: %s", slot, strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		become_worker(m, slot, sv[1], master_pid);
	}
	close(sv[1]);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	uint64_t now = now_ms();
	m->w[m->nw++] = (struct worker){.pid = pid, .slot = slot, .gen = gen, .chan = sv[0],
					.started_ms = now, .beat_ms = now};
	if (gen == m->gen && slot <= m->nslots) {
		m->slots[slot - 1].restart_at_ms = 0;
		m->slots[slot - 1].starts++;
	}
	return 0;
}

static void signal_workers(struct master *m, int sig)
{
	for (unsigned i = 0; i < m->nw; i++)
		if (m->w[i].pid > 0)
			kill(m->w[i].pid, sig);
}

static void begin_stop(struct master *m, int sig)
{
	if (!m->stopping) { /* a second signal does not postpone the kill */
		cs_log(CS_LOG_NOTICE, "cosockd: master: %s: stopping the workers", strsignal(sig));
		cs_notify("STOPPING=1");
		m->kill_at_ms = now_ms() + m->cfg->stop_grace_ms + STOP_SLACK_MS;
	}
	m->stopping = true;
	for (unsigned i = 0; i < m->nslots; i++)
		m->slots[i].restart_at_ms = 0;
	signal_workers(m, sig);
}

static void describe_status(int st, char *buf, size_t len)
{
	if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
}

/* Tell the workers of every generation but the serving one to drain. */
static void retire_old(struct master *m)
{
	uint64_t kill_at = now_ms() + m->cfg->reload_grace_ms + STOP_SLACK_MS;
	for (unsigned i = 0; i < m->nw; i++) {
		struct worker *w = &m->w[i];
		if (w->pid > 0 && w->gen != m->gen && !w->retiring) {
			w->retiring = true;
			w->quit_sent = true;
			w->kill_at_ms = kill_at;
			kill(w->pid, SIGQUIT);
		}
	}
}

static void begin_reload(struct master *m);
static void reload_ready(struct master *m);
static void fail_reload(struct master *m, const char *why);

/* Every worker of the reload's generation is ready: it serves now. */
static void finish_reload(struct master *m)
{
	struct slot *slots = calloc(m->pending_slots, sizeof(*slots));
	if (!slots) {
		fail_reload(m, "out of memory");
		return;
	}
	for (unsigned i = 0; i < m->pending_slots; i++)
		slots[i].starts = 1;
	free(m->slots);
	m->slots = slots;
	m->nslots = m->pending_slots;
	m->gen = m->pending;
	m->pending = 0;
	m->pending_until_ms = 0;
	m->ever_ready = true; /* also when the reload came before the first READY */
	retire_old(m);
	cs_listeners_retire(m->cfg->listeners, m->gen, m->nslots);
	cs_log(CS_LOG_NOTICE,
	       "cosockd: master: reload done: generation %u serves with %u worker%s; "
	       "the old workers drain for up to %u ms",
	       m->gen, m->nslots, m->nslots == 1 ? "" : "s", m->cfg->reload_grace_ms);
	m->ready_at_ms = now_ms() + DRAIN_ACK_MS;
	reload_ready(m);
}

/* READY=1 for a finished reload once no old worker may still accept (or
 * when waiting for that took too long), then a reload asked for meanwhile. */
static void reload_ready(struct master *m)
{
	if (!m->ready_at_ms)
		return;
	if (m->stopping) {
		m->ready_at_ms = 0;
		return;
	}
	unsigned waiting = 0;
	for (unsigned i = 0; i < m->nw; i++)
		waiting += m->w[i].quit_sent && !m->w[i].drain_acked;
	if (waiting && now_ms() < m->ready_at_ms)
		return;
	if (waiting)
		cs_log(CS_LOG_WARNING, "cosockd: master: %u old worker%s did not confirm the drain within %u ms",
		       waiting, waiting == 1 ? "" : "s", DRAIN_ACK_MS);
	m->ready_at_ms = 0;
	cs_notify("READY=1");
	if (m->reload_queued) {
		m->reload_queued = false;
		begin_reload(m);
	}
}

/* The reload's generation cannot start: stop what there is of it. */
static void fail_reload(struct master *m, const char *why)
{
	cs_log(CS_LOG_ERR, "cosockd: master: reload failed: %s; generation %u goes on serving", why, m->gen);
	for (unsigned i = 0; i < m->nw; i++) {
		struct worker *w = &m->w[i];
		if (w->pid > 0 && w->gen == m->pending) {
			w->retiring = true;
			w->kill_at_ms = now_ms() + m->cfg->stop_grace_ms + STOP_SLACK_MS;
			kill(w->pid, SIGTERM);
		}
	}
	/* sockets only it asked for would queue connections nobody takes */
	cs_listeners_abandon(m->cfg->listeners, m->pending);
	m->pending = 0;
	m->pending_until_ms = 0;
	if (m->ever_ready)
		cs_notify("READY=1");
	if (m->reload_queued) {
		m->reload_queued = false;
		begin_reload(m);
	}
}

static void begin_reload(struct master *m)
{
	if (m->stopping)
		return;
	if (m->pending || m->ready_at_ms) {
		cs_log(CS_LOG_NOTICE, "cosockd: master: SIGHUP during a reload: reloading again once it is over");
		m->reload_queued = true;
		return;
	}
	cs_log(CS_LOG_NOTICE, "cosockd: master: SIGHUP: reloading");
	cs_notify("RELOADING=1");
	if (m->cfg->reload && m->cfg->reload(m->cfg) < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: reload failed: generation %u goes on serving", m->gen);
		if (m->ever_ready)
			cs_notify("READY=1");
		return;
	}
	m->pending = ++m->next_gen;
	m->pending_slots = m->cfg->workers;
	m->pending_until_ms = now_ms() + RELOAD_START_MS;
	for (unsigned s = 1; s <= m->pending_slots; s++)
		if (start_worker(m, s, m->pending) < 0) {
			fail_reload(m, "a worker could not be started");
			return;
		}
}

/* Decide what a dead worker means: nothing, a restart, a failed reload,
 * or the end. */
static void worker_died(struct master *m, struct worker *w, int st)
{
	uint64_t lived = now_ms() - w->started_ms;
	char how[96];
	describe_status(st, how, sizeof(how));
	bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	/* killed by the stop signal we passed on before it set its handler */
	if ((m->stopping || w->retiring) && WIFSIGNALED(st) &&
	    (WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGINT || WTERMSIG(st) == SIGQUIT))
		clean = true;
	if (w->exit_asked && WIFEXITED(st))
		clean = true; /* m->status holds the code it asked for */
	pid_t pid = w->pid;
	unsigned slot = w->slot, gen = w->gen;
	bool was_ready = w->ready, retiring = w->retiring;
	if (w->chan >= 0)
		close(w->chan);
	*w = m->w[--m->nw]; /* w is gone from here on */

	if (m->stopping) {
		if (!clean) {
			cs_log(CS_LOG_WARNING, "cosockd: master: worker %u (pid %d) %s while stopping", slot, (int)pid, how);
			m->status = 1;
		}
		return;
	}
	if (retiring) {
		if (gen > m->gen)
			cs_log(CS_LOG_INFO, "cosockd: master: worker %u (pid %d) of the abandoned generation %u %s",
			       slot, (int)pid, gen, how);
		else
			cs_log(clean ? CS_LOG_INFO : CS_LOG_WARNING, "cosockd: master: old worker %u (pid %d, generation %u) %s",
			       slot, (int)pid, gen, clean ? "drained and exited" : how);
		reload_ready(m);
		return;
	}
	if (gen == m->pending) {
		char why[160];
		snprintf(why, sizeof(why), "new worker %u (pid %d) %s%s", slot, (int)pid, how,
			 was_ready ? "" : " before it was ready");
		fail_reload(m, why);
		return;
	}
	/* what its sockets queue would wait for a replacement: reset it now,
	 * as the worker's own socket would have been, and let the kernel send
	 * new connections to the slots that live */
	bool slot_held = false;
	for (unsigned i = 0; i < m->nw; i++)
		slot_held |= m->w[i].slot == slot && !m->w[i].retiring; /* a reload's new worker */
	if (!slot_held)
		cs_listeners_drop_slot(m->cfg->listeners, slot);
	if (clean) {
		cs_log(CS_LOG_INFO, "cosockd: master: worker %u (pid %d) finished", slot, (int)pid);
		return;
	}
	if (!was_ready && !m->ever_ready) {
		cs_log(CS_LOG_ERR, "cosockd: master: worker %u (pid %d) %s before it was ready; giving up",
		       slot, (int)pid, how);
		m->status = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		begin_stop(m, SIGTERM);
		return;
	}
	struct slot *s = &m->slots[slot - 1];
	uint64_t delay = 0;
	if (lived < QUICK_DEATH_MS) {
		delay = (uint64_t)BACKOFF_MIN_MS << (s->quick_deaths < 7 ? s->quick_deaths : 7);
		if (delay > BACKOFF_MAX_MS)
			delay = BACKOFF_MAX_MS;
		s->quick_deaths++;
	} else {
		s->quick_deaths = 0;
	}
	cs_log(CS_LOG_WARNING, "cosockd: master: worker %u (pid %d) %s after %llu ms; restarting it in %llu ms",
	       slot, (int)pid, how, (unsigned long long)lived, (unsigned long long)delay);
	s->restart_at_ms = now_ms() + delay; /* never 0: the clock is past boot */
}

static void reap(struct master *m)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		struct worker *w = find_pid(m, pid);
		if (w)
			worker_died(m, w, st);
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
			begin_reload(m);
			break;
		}
	}
}

/* ---- the channel, master side -------------------------------------------- */

static bool generation_ready(const struct master *m, unsigned gen)
{
	unsigned ready = 0;
	for (unsigned i = 0; i < m->nw; i++)
		if (m->w[i].gen == gen && m->w[i].ready && !m->w[i].retiring)
			ready++;
	return ready == (gen == m->pending ? m->pending_slots : m->nslots);
}

static void worker_ready(struct master *m, struct worker *w)
{
	if (w->ready)
		return;
	w->ready = true;
	w->beat_ms = now_ms();
	if (m->stopping || w->retiring)
		return; /* told to go (a failed reload's, an old generation's) */
	if (w->gen == m->pending) {
		if (generation_ready(m, w->gen))
			finish_reload(m);
		return;
	}
	if (m->slots[w->slot - 1].starts > 1)
		cs_log(CS_LOG_NOTICE, "cosockd: master: worker %u (pid %d) is serving again", w->slot, (int)w->pid);
	if (!m->ever_ready && generation_ready(m, m->gen)) {
		m->ever_ready = true;
		cs_log(CS_LOG_INFO, "cosockd: master: all %u workers are ready", m->nslots);
		cs_listeners_warn_unadopted(m->cfg->listeners);
		cs_notify("READY=1");
	}
}

static void answer_listen(struct master *m, struct worker *w, struct msg *q)
{
	struct cs_listen_req req = {
		.type = q->sock_type == SOCK_DGRAM ? SOCK_DGRAM : SOCK_STREAM,
		.addr = (const struct sockaddr *)&q->addr,
		.addrlen = q->addrlen <= sizeof(q->addr) ? q->addrlen : 0,
		.any_addr = q->any_addr,
		.fdname = q->fdname[0] ? q->fdname : NULL,
	};
	q->fdname[sizeof(q->fdname) - 1] = 0;
	bool kept = false;
	int fd = !req.addrlen ? -EINVAL
		 : w->retiring && w->gen > m->gen ? -ECANCELED /* its reload failed: nothing new */
		 : cs_listeners_get(m->cfg->listeners, &req, w->slot, w->gen, &kept);
	struct msg a = {.type = MSG_LISTEN_REPLY, .value = fd < 0 ? fd : 0, .shared = kept};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &a, .iov_len = sizeof(a)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	}
	if (sendmsg(w->chan, &mh, MSG_NOSIGNAL) < 0)
		cs_log(CS_LOG_WARNING, "cosockd: master: cannot answer worker %u (pid %d): %s", w->slot, (int)w->pid,
		       strerror(errno));
	if (fd >= 0 && !kept)
		close(fd);
}

/* What a worker said. Handling a message can start workers (a reload
 * that was waiting), which moves m->w: w is looked up again each time. */
static void read_channel(struct master *m, pid_t pid)
{
	for (;;) {
		struct worker *w = find_pid(m, pid);
		if (!w || w->chan < 0)
			return;
		struct msg q;
		ssize_t n = recv(w->chan, &q, sizeof(q), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) { /* the worker closed it or died: SIGCHLD follows */
			close(w->chan);
			w->chan = -1;
			return;
		}
		if (n != (ssize_t)sizeof(q))
			continue;
		switch (q.type) {
		case MSG_READY:
			worker_ready(m, w);
			break;
		case MSG_BEAT:
			w->beat_ms = now_ms();
			w->conns = q.value > 0 ? (uint32_t)q.value : 0;
			break;
		case MSG_LISTEN:
			answer_listen(m, w, &q);
			break;
		case MSG_DRAINING:
			w->drain_acked = true;
			reload_ready(m);
			break;
		case MSG_EXIT:
			cs_log(CS_LOG_NOTICE, "cosockd: master: worker %u (pid %d) called cosockd.exit(%d): stopping the daemon",
			       w->slot, (int)w->pid, (int)q.value);
			w->exit_asked = true;
			m->status = q.value;
			begin_stop(m, SIGTERM);
			break;
		}
	}
}

/* ---- timers -------------------------------------------------------------- */

static void next_due(uint64_t *next, uint64_t at)
{
	if (at && at < *next)
		*next = at;
}

/* Kill stalled workers; ping systemd if none is. */
static void read_channel(struct master *m, pid_t pid);

static void watchdog(struct master *m, uint64_t now)
{
	/* beats the master has not read yet (it was busy, or stopped) count;
	 * reading can start workers, so go by pid */
	unsigned n = m->nw;
	pid_t *pids = malloc(n * sizeof(*pids) + 1);
	for (unsigned i = 0; pids && i < n; i++)
		pids[i] = m->w[i].pid;
	for (unsigned i = 0; pids && i < n; i++)
		read_channel(m, pids[i]);
	free(pids);
	bool stalled = false;
	uint64_t limit = m->watchdog_ms / 2;
	for (unsigned i = 0; i < m->nw; i++) {
		struct worker *w = &m->w[i];
		if (w->pid <= 0 || !w->ready || w->retiring || now - w->beat_ms <= limit)
			continue;
		cs_log(CS_LOG_ERR, "cosockd: master: worker %u (pid %d) stalled: no heartbeat for %llu ms; killing it",
		       w->slot, (int)w->pid, (unsigned long long)(now - w->beat_ms));
		kill(w->pid, SIGKILL);
		w->ready = false; /* not counted again while it dies */
		stalled = true;
	}
	if (!stalled)
		cs_notify("WATCHDOG=1");
}

static void update_status(struct master *m)
{
	unsigned serving = 0, draining = 0;
	uint64_t conns = 0;
	for (unsigned i = 0; i < m->nw; i++) {
		const struct worker *w = &m->w[i];
		if (w->pid <= 0)
			continue;
		conns += w->conns;
		if (w->retiring)
			draining++;
		else if (w->gen == m->gen && w->ready)
			serving++;
	}
	char text[160];
	int n = snprintf(text, sizeof(text), "%s%u worker%s, %llu connection%s", m->pending ? "reloading: " : "",
			 serving, serving == 1 ? "" : "s", (unsigned long long)conns, conns == 1 ? "" : "s");
	if (draining && n > 0 && (size_t)n < sizeof(text))
		snprintf(text + n, sizeof(text) - (size_t)n, ", %u draining", draining);
	cs_notify_status(text);
}

/* Run what is due; returns the poll timeout until the next thing. */
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
	for (unsigned i = 0; i < m->nw; i++) {
		struct worker *w = &m->w[i];
		if (!w->retiring || m->stopping)
			continue;
		if (now >= w->kill_at_ms) {
			cs_log(CS_LOG_WARNING, "cosockd: master: old worker %u (pid %d) still draining after the grace period; killing it",
			       w->slot, (int)w->pid);
			kill(w->pid, SIGKILL);
			w->kill_at_ms = now + STOP_SLACK_MS;
		}
		next_due(&next, w->kill_at_ms);
	}
	for (unsigned i = 0; i < m->nslots && !m->stopping; i++) {
		struct slot *s = &m->slots[i];
		if (!s->restart_at_ms)
			continue;
		if (s->restart_at_ms <= now && start_worker(m, i + 1, m->gen) < 0)
			s->restart_at_ms = now + BACKOFF_MAX_MS;
		next_due(&next, s->restart_at_ms);
	}
	if (m->ready_at_ms) {
		reload_ready(m);
		next_due(&next, m->ready_at_ms);
	}
	if (m->pending && !m->stopping) {
		if (now >= m->pending_until_ms) {
			char why[80];
			snprintf(why, sizeof(why), "the new workers were not ready within %u s", RELOAD_START_MS / 1000);
			fail_reload(m, why);
		} else {
			next_due(&next, m->pending_until_ms);
		}
	}
	if (m->watchdog_ms && !m->stopping && m->ever_ready) {
		if (now >= m->next_ping_ms) {
			watchdog(m, now);
			m->next_ping_ms = now + m->watchdog_ms / 2;
		}
		next_due(&next, m->next_ping_ms);
	}
	if (cs_notify_enabled() && m->ever_ready && !m->stopping) {
		if (now >= m->next_status_ms) {
			update_status(m);
			m->next_status_ms = now + STATUS_MS;
		}
		next_due(&next, m->next_status_ms);
	}
	if (next == UINT64_MAX)
		return -1;
	return next > now ? (int)(next - now) : 0;
}

static bool any_alive(const struct master *m)
{
	if (m->nw)
		return true;
	for (unsigned i = 0; i < m->nslots; i++)
		if (m->slots[i].restart_at_ms)
			return true;
	return false;
}

int cs_master_run(struct cs_master_config *cfg)
{
	struct master m = {.cfg = cfg, .sigfd = -1, .gen = 1, .next_gen = 1, .nslots = cfg->workers};
	m.slots = calloc(cfg->workers, sizeof(*m.slots));
	if (!m.slots) {
		cs_log(CS_LOG_ERR, "cosockd: master: out of memory");
		return 1;
	}
	m.watchdog_ms = cs_notify_watchdog_ms();
	worker_beat_ms = BEAT_MS;
	if (m.watchdog_ms && m.watchdog_ms / 4 < worker_beat_ms)
		worker_beat_ms = m.watchdog_ms / 4 ? (unsigned)(m.watchdog_ms / 4) : 1;
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGQUIT); /* a graceful stop is for workers: read and ignored */
	sigprocmask(SIG_BLOCK, &mask, &m.old_mask);
	m.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m.sigfd < 0) {
		cs_log(CS_LOG_ERR, "cosockd: master: signalfd: %s", strerror(errno));
		free(m.slots);
		return 1;
	}
	cs_log(CS_LOG_INFO, "cosockd: master (pid %d): starting %u workers", (int)getpid(), cfg->workers);
	for (unsigned s = 1; s <= cfg->workers && !m.stopping; s++) {
		if (start_worker(&m, s, m.gen) < 0) {
			m.status = 1;
			begin_stop(&m, SIGTERM);
		}
	}

	struct pollfd *pfd = NULL;
	pid_t *who = NULL;
	unsigned cap = 0;
	while (any_alive(&m)) {
		int timeout = run_timers(&m);
		if (cap < m.nw + 1) {
			cap = 2 * (m.nw + 1);
			struct pollfd *p = realloc(pfd, cap * sizeof(*p));
			pid_t *q = p ? realloc(who, cap * sizeof(*q)) : NULL;
			if (p)
				pfd = p;
			if (q)
				who = q;
			if (!p || !q) {
				cs_log(CS_LOG_ERR, "cosockd: master: out of memory");
				signal_workers(&m, SIGKILL);
				m.status = 1;
				break;
			}
		}
		nfds_t n = 0;
		pfd[n++] = (struct pollfd){.fd = m.sigfd, .events = POLLIN};
		for (unsigned i = 0; i < m.nw; i++)
			if (m.w[i].chan >= 0) {
				who[n] = m.w[i].pid;
				pfd[n++] = (struct pollfd){.fd = m.w[i].chan, .events = POLLIN};
			}
		if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
			cs_log(CS_LOG_ERR, "cosockd: master: poll: %s", strerror(errno));
			signal_workers(&m, SIGKILL);
			m.status = 1;
			break;
		}
		/* channels first: a worker's last words come before its death */
		for (nfds_t k = 1; k < n; k++)
			if (pfd[k].revents)
				read_channel(&m, who[k]);
		if (pfd[0].revents)
			read_signals(&m);
	}
	while (waitpid(-1, NULL, 0) > 0) /* after a failure: nobody left behind */
		;
	cs_log(CS_LOG_INFO, "cosockd: master: every worker has stopped");
	for (unsigned i = 0; i < m.nw; i++)
		if (m.w[i].chan >= 0)
			close(m.w[i].chan);
	free(who);
	free(pfd);
	free(m.w);
	free(m.slots);
	close(m.sigfd);
	sigprocmask(SIG_SETMASK, &m.old_mask, NULL);
	return m.status;
}
