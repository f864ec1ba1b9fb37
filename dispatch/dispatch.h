/*
 * dispatch.h - the completion-style event loop of one cosockd worker.
 *
 * One loop runs on one thread, and every call below except cs_loop_post()
 * and cs_loop_wake() must come from that thread (the io_uring backend is a
 * single-issuer ring). It owns a flat table of connection slots,
 * a timer heap and a cross-thread post queue, and drives them through one
 * of two backends (io_uring or edge-triggered epoll) that nothing above this
 * header can tell apart.
 *
 * Contract in one paragraph: the owner asks for something ("accept on this
 * listener", "give me the next chunk", "send these bytes", "connect", "wake me
 * at T", "run this on the loop thread") and either gets the answer at once or
 * is called back later, exactly once, from cs_loop_poll(). Callbacks never
 * run from inside the call that requested them (release and drain after an
 * immediate send are the one exception). Every function returns 0 (or
 * a count) on success and -errno on failure unless it says otherwise.
 *
 * Knows nothing of Lua.
 */
#ifndef CS_DISPATCH_H
#define CS_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct cs_loop cs_loop;
typedef struct cs_conn cs_conn;
typedef struct cs_timer cs_timer;
typedef struct cs_post cs_post;

enum cs_backend {
	CS_BACKEND_AUTO = 0, /* io_uring when the kernel allows it, else epoll */
	CS_BACKEND_URING,
	CS_BACKEND_EPOLL,
};

/* Largest chunk one receive hands out. */
#define CS_RECV_CHUNK 16384u

struct cs_loop_config {
	enum cs_backend backend;
	uint32_t max_conns;    /* slot table size; 0 = 262144 */
	uint32_t recv_buffers; /* shared receive buffers (power of two); 0 = 1024 */
	uint32_t linger_ms;    /* longest a gracefully closed conn may flush; 0 = 5000 */
};

/*
 * What the loop calls back. One table per loop: every conn belongs to the
 * same owner. None is called for a conn after cs_conn_close(), except
 * release, which returns queued write entries to whoever pinned them.
 */
struct cs_conn_ops {
	/* Answer to a cs_conn_recv() that returned -EAGAIN.
	 * n > 0: n bytes at data, valid during the call only; 0: end of stream;
	 * n < 0: -errno. */
	void (*recv)(cs_conn *c, const char *data, ssize_t n);
	/* Answer to a cs_conn_accept() that returned -EAGAIN: a new connected,
	 * non-blocking fd that the callee now owns, or -errno. */
	void (*accept)(cs_conn *listener, int fd);
	/* Answer to cs_conn_connect(): 0 or -errno. */
	void (*connect)(cs_conn *c, int err);
	/* The write queue emptied: every queued byte is in the kernel. Also
	 * called with the queue non-empty when sending failed (see
	 * cs_conn_error()). */
	void (*drain)(cs_conn *c);
	/* A queued write entry is no longer referenced by the loop. */
	void (*release)(cs_loop *loop, uintptr_t cookie);
	/* Answer to cs_conn_poll_readable(): the fd may have data (or an
	 * error) to read. */
	void (*readable)(cs_conn *c);
};

/* ---- the loop ---------------------------------------------------------- */

/* Create a loop. With CS_BACKEND_AUTO, io_uring is tried first and epoll is
 * used when io_uring_setup() or a feature we need is refused. */
int cs_loop_create(const struct cs_loop_config *cfg, const struct cs_conn_ops *ops,
		   void *udata, cs_loop **out);

/* Close every conn at once (no flushing), free everything. */
void cs_loop_destroy(cs_loop *loop);

/* "io_uring" or "epoll". */
const char *cs_loop_backend(const cs_loop *loop);

void *cs_loop_udata(const cs_loop *loop);
void cs_loop_set_udata(cs_loop *loop, void *udata);

/* before() and after() run on the loop thread around every syscall in which
 * the backend may sleep (and nowhere else), so that an owner whose callbacks
 * run under a lock can leave that lock to other threads while the loop
 * waits. Either may be NULL. */
void cs_loop_set_wait_hooks(cs_loop *loop, void (*before)(void *arg), void (*after)(void *arg), void *arg);

/* Wait up to timeout_ms (-1: until something happens) for completions, then
 * run their callbacks, due timers and posted work. Returns the number of
 * callbacks run, or -errno when the backend failed. */
int cs_loop_poll(cs_loop *loop, int timeout_ms);

/* Monotonic milliseconds, read once per cs_loop_poll(). */
uint64_t cs_loop_now(const cs_loop *loop);

/* Re-read the clock (after a long piece of work on the loop thread). */
void cs_loop_update_time(cs_loop *loop);

struct cs_loop_stats {
	uint32_t conns;        /* slots in use, including conns still closing */
	uint32_t max_conns;    /* slot table size */
	uint32_t timers;       /* armed timers */
	uint64_t accepted;     /* connections accepted since start */
	uint64_t bytes_in, bytes_out;
};
void cs_loop_stats(const cs_loop *loop, struct cs_loop_stats *st);

/* ---- timers ------------------------------------------------------------ */

/* A timer lives inside its owner's struct; the loop only links to it. */
struct cs_timer {
	uint64_t due;      /* cs_loop_now() value at which it fires */
	uint32_t slot;     /* position in the heap + 1; 0 when not in the heap */
	bool expired;      /* taken off the heap, about to fire in this poll */
	cs_timer *next_expired, **prev_expired; /* the loop's batch of due timers */
	void (*fire)(cs_timer *t);
};

void cs_timer_init(cs_timer *t, void (*fire)(cs_timer *t));
/* (Re)arm to fire once, ms from now (the clock is read afresh). */
int cs_timer_start(cs_loop *loop, cs_timer *t, uint64_t ms);
void cs_timer_stop(cs_loop *loop, cs_timer *t);
static inline bool cs_timer_armed(const cs_timer *t) { return t->slot != 0 || t->expired; }

/* ---- cross-thread work ------------------------------------------------- */

/* Work handed to the loop thread from any thread. */
struct cs_post {
	cs_post *next;
	void (*run)(cs_post *p);
};

/* Thread-safe: queue p; the loop runs p->run(p) on its own thread soon. */
void cs_loop_post(cs_loop *loop, cs_post *p);

/* Async-signal-safe: make a sleeping cs_loop_poll() return. */
void cs_loop_wake(cs_loop *loop);

/* ---- connections ------------------------------------------------------- */

/* Put fd (any stream socket: connected, listening, or about to connect)
 * under the loop. The loop owns fd from now on, also on failure.
 * -ENFILE when every slot is taken. */
int cs_conn_open(cs_loop *loop, int fd, void *udata, cs_conn **out);

void *cs_conn_udata(const cs_conn *c);
void cs_conn_set_udata(cs_conn *c, void *udata);
int cs_conn_fd(const cs_conn *c);
/* Slot index: stable for the conn's life, reused afterwards. */
uint32_t cs_conn_id(const cs_conn *c);
cs_loop *cs_conn_loop(const cs_conn *c);

/* Take one accepted connection from a listening conn.
 * >= 0: an fd that the caller owns (connected, non-blocking, CLOEXEC);
 * -EAGAIN: none yet; ops->accept() follows once, unless cancelled;
 * other -errno: the listener failed. */
int cs_conn_accept(cs_conn *listener);
void cs_conn_accept_cancel(cs_conn *listener);

/* Stop taking connections from the kernel for this listening conn: later
 * cs_conn_accept() calls return -ESHUTDOWN, and a pending -EAGAIN gets
 * ops->accept() with -ESHUTDOWN (or with a connection taken as the stop
 * raced it) from a later cs_loop_poll() (from inside this call only when no
 * memory is left to defer it). No backend takes connections before the
 * owner asks, so the socket's queue stays whole for other processes that
 * hold it. cs_conn_close() of a stopped listener closes only this
 * process's fd, never shutdown(2). Idempotent; a no-op on conns that are
 * not listening or are closing. */
void cs_conn_accept_stop(cs_conn *listener);

/* Take the next received chunk.
 * > 0: that many bytes at *data, valid until the next cs_conn_recv() on
 *      any conn or the next cs_loop_poll(), whichever comes first;
 * 0: end of stream; -EAGAIN: nothing yet, ops->recv() follows once unless
 * cancelled; other -errno: the connection failed.
 * A conn that is not asked keeps at most what already arrived in user space;
 * the rest waits in the kernel. */
ssize_t cs_conn_recv(cs_conn *c, const char **data);
void cs_conn_recv_cancel(cs_conn *c);

/* Send len bytes. The queue is FIFO across callers; one send is in flight at
 * a time and queued entries are gathered into one sendmsg.
 * 0: nothing to send (len 0);
 * 1: queued; data must stay valid until ops->release(cookie), which runs
 *    exactly once and may run (with ops->drain) before this call returns
 *    when the backend could send at once;
 * -errno: the connection cannot send any more (nothing was queued). */
int cs_conn_send(cs_conn *c, const void *data, size_t len, uintptr_t cookie);

/* For writers that cannot wait: when nothing is queued or in flight, hand
 * the kernel what it takes right now (one non-blocking sendmsg, whatever
 * the backend). Returns the bytes taken (0 when the queue is busy or the
 * socket buffer is full) or -errno; the rest is the caller's to queue.
 * Like cs_conn_queued(), cs_conn_error(), cs_conn_fd() and the udata calls,
 * it may also run on another thread while the owner's lock keeps the loop
 * thread out of cs_loop_poll()'s processing (see cs_loop_set_wait_hooks). */
ssize_t cs_conn_try_send(cs_conn *c, const void *data, size_t len);

/* Bytes queued and not yet taken by the kernel. */
size_t cs_conn_queued(const cs_conn *c);

/* Sticky send error (-errno) once a send failed, else 0. */
int cs_conn_error(const cs_conn *c);

/* Start a non-blocking connect of the conn's fd.
 * 0: connected already; -EINPROGRESS: ops->connect() follows; other -errno. */
int cs_conn_connect(cs_conn *c, const struct sockaddr *sa, socklen_t len);

/* For fds whose owner does its own reads (datagram sockets): call
 * ops->readable() once the fd becomes readable. Ask only after a read of
 * your own said EAGAIN; cs_conn_poll_cancel() withdraws the request.
 * 0 or -errno. */
int cs_conn_poll_readable(cs_conn *c);
void cs_conn_poll_cancel(cs_conn *c);

/* Send FIN once every queued byte is in the kernel (shutdown(SHUT_WR));
 * receiving goes on. 0 or -errno. */
int cs_conn_shutdown_write(cs_conn *c);

/* Let go of the conn. No callback but release runs for it afterwards. With
 * graceful, queued bytes are still sent (for at most linger_ms) before the fd
 * is closed; otherwise it closes now and the peer may see a reset. The slot
 * is reused only after the backend has finished with it. */
void cs_conn_close(cs_conn *c, bool graceful);

#endif
