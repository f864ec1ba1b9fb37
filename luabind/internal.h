/*
 * internal.h - what luabind's modules share: the VM, the socket object and
 * the scheduler primitives (wait, wake, resume).
 *
 * Scheduling rules:
 *  - A cosocket is a socket object bound to one coroutine. A call that must
 *    wait records why in sock->wait and yields with no values.
 *  - Whoever ends the wait pushes the results onto the coroutine's stack and
 *    calls cs__wake(); the coroutine is resumed from cs_vm_run_ready(), never
 *    from inside the waker. Only enable() and event() resume directly,
 *    because their return values depend on what the coroutine did.
 *  - The coroutine is found from a lua_State through the thread's extra
 *    space, which holds its socket (NULL for every other thread).
 *
 * Threads (thread.c):
 *  - Lua runs only under vm->lock. The loop thread holds it all the time
 *    except inside the backend's wait; a pool thread holds it while it runs
 *    Lua and lets it go whenever it waits.
 *  - Only the loop thread calls into dispatch/. Every ba.socket function and
 *    socket method is registered through cs__setfuncs_on_loop(): called on
 *    a pool thread, it runs on the loop thread instead (cs__on_loop()) while
 *    the pool thread waits.
 *  - A pool thread that must wait for I/O is "parked": sock->blocker names
 *    it, and cs__wake() hands it the results exactly as it would resume a
 *    cosocket.
 */
#ifndef CS_LUABIND_INTERNAL_H
#define CS_LUABIND_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>

#include "luabind.h"
#include "pool.h"

#define CS_SOCK_MT "_BASOCK"
#define CS_TIMER_MT "_BATIMER"

/* What a cosocket waits for. */
enum cs_wait {
	CS_WAIT_NONE = 0, /* running, or not started */
	CS_WAIT_READY,    /* results pushed, queued for resume */
	CS_WAIT_READ,
	CS_WAIT_ACCEPT,
	CS_WAIT_CONNECT,  /* resolving or connecting */
	CS_WAIT_WRITE,    /* on another socket's queue (sock->write_target) */
	CS_WAIT_SLEEP,    /* read(ms) on a socket with nothing to read */
	CS_WAIT_DISABLED, /* disable()d itself, waits for enable() */
	CS_WAIT_HANDSHAKE,/* a TLS connect or upgrade: the handshake runs */
};

enum cs_kind { CS_SOCK_NONE, CS_SOCK_TCP, CS_SOCK_LISTEN, CS_SOCK_UDP };

struct cs_resolve;
struct cs_sock_tls;
struct cs_sock_ws;
struct cs_http_conn;
typedef struct cs_lthread cs_lthread;

/* Write-queue cookies: a registry reference pinning a Lua string, or a
 * malloc'd buffer (TLS ciphertext) that release frees. */
#define CS_COOKIE_REF(ref) ((uintptr_t)(ref) << 1)
#define CS_COOKIE_MEM(p) ((uintptr_t)(p) | 1u)

struct cs_sock {
	cs_vm *vm;
	cs_conn *conn;      /* NULL: never had an OS socket, or closed */
	uint8_t kind;       /* enum cs_kind */
	char mode;          /* 0 = not a cosocket, 'r' or 's' */
	uint8_t wait;       /* enum cs_wait */
	bool had_conn;      /* was connected once (so "closed", not "socket-less") */
	bool shared_listener; /* other processes hold it: close, never shut down */
	uint32_t drain_accepts; /* draining, not shared: accepts left before it stops */
	bool dead_read;     /* a read already reported the socket dead */
	bool rx_paused;     /* disable()d from outside: receive events stopped */
	bool ipv6;
	bool halfclose;     /* setoption("halfclose"): peer EOF leaves us able to send */
	bool eof;           /* the peer sent FIN (halfclose sockets only) */
	bool dgram_from;    /* UDP read waiting: return the sender too */
	lua_State *co;      /* its coroutine (kept alive by user value 1) */
	int self_ref;       /* registry ref while the cosocket is active */
	int nresume;        /* values pushed for the pending resume */
	cs_timer timer;     /* read timeout, sleep, connect timeout */
	struct cs_sock *next, *prev;        /* vm->cosockets list */
	struct cs_sock *ready_next;         /* vm ready queue */
	struct cs_sock *wnext;              /* writers waiting on a queue */
	struct cs_sock *writers, *writers_tail; /* cosockets waiting on our queue */
	struct cs_sock *write_target;       /* queue we wait on */
	cs_lthread *blocker;                /* pool thread parked on our own wait */
	cs_lthread *bwriters;               /* pool threads waiting for our queue to drain */
	size_t queue_limit; /* queuelen(): non-cosocket writers stop here */
	uint32_t maxsize;   /* maxsize(): accepted and remembered */
	struct cs_resolve *resolve; /* name resolution in flight */
	struct addrinfo *addrs, *next_addr; /* connect candidates */
	char *intf;         /* connect: local address to bind */
	char *host;         /* connect: the host asked for (TLS name) */
	struct cs_sock_tls *tls; /* TLS state (tls_sock.c), NULL: plain */
	struct cs_sock_ws *ws;   /* WebSocket framing (ws_sock.c), NULL: none */
	struct cs_http_conn *http; /* an HTTP server connection (http_server.c) */
	uint32_t connect_ms;
	uint32_t id;        /* for tostring */
};
typedef struct cs_sock cs_sock;

struct cs_lpool;

/* A pool thread that runs Lua (thread.c). */
struct cs_lthread {
	cs_vm *vm;
	struct cs_lpool *pool;
	pthread_t tid;
	pthread_cond_t cond; /* waited on with vm->lock */
	lua_State *base;     /* holds the job coroutine; registry-anchored */
	int base_ref;
	lua_State *job;      /* the running job's coroutine, or NULL */
	lua_State *wl;       /* the state a parked wait's results go to */
	bool woken;          /* the wait ended; results are on wl */
	bool parked;         /* a call run on the loop thread left us waiting */
	bool exited;
	int status;          /* Lua status of that call */
	cs_sock *blocked_on; /* socket whose own wait we are parked on */
	cs_sock *write_on;   /* socket whose queue we wait to drain */
	bool sleeping;       /* in ba.sleep() */
	cs_lthread *next;    /* vm->lthreads */
	cs_lthread *bnext;   /* sock->bwriters */
};

struct cs_vm {
	lua_State *L;
	pthread_mutex_t lock;        /* the VM lock: whoever runs Lua holds it */
	atomic_bool lock_wanted;     /* the loop thread waits for the lock */
	cs_loop *loop;
	cs_pool *resolver;
	void (*log)(int prio, const char *line);
	cs_sock *cosockets;          /* every socket with a live coroutine */
	cs_sock *ready_head, *ready_tail;
	unsigned waiting;            /* cosockets waiting on I/O or time */
	unsigned timers;             /* armed ba.timer objects */
	unsigned resolving;          /* resolutions in flight */
	unsigned total_socks, active_socks;
	unsigned socks_by_kind[4];  /* active sockets of each enum cs_kind */
	uint32_t next_id;
	bool shutting_down, closing;
	bool exit_requested;
	int exit_code;
	struct cs_lpool *threads;    /* ba.thread.run's pool */
	struct cs_lpool *pools;      /* every pool, threads included */
	cs_lthread *lthreads;        /* every pool thread of every pool */
	cs_lthread *caller;          /* pool thread whose call runs right now */
	unsigned max_threads;        /* --threads */
	unsigned jobs;               /* ba.thread jobs queued or running */
	unsigned live_threads;       /* pool threads not yet exited */
	bool threads_stopping;
	void *rng;                   /* wolfSSL DRBG (codec.c), made on first use */
	char *dgram_buf;             /* one datagram being read (udp.c) */
	bool reuseport;              /* listeners share their port (workers) */
	bool draining;               /* cs_vm_drain(): no new connections */
	struct cs_http_conn *http_conns; /* every HTTP server connection */
	struct cs_listen_source listen; /* .open NULL: bind here */
	char *state_dir;             /* the "vm" IO's root (io.c) */
	char *tls_buf;               /* one decrypted record being read */
};

/* The pool thread running on this OS thread, NULL on the loop thread. */
extern __thread cs_lthread *cs__self;

/* thread.c */
int cs__open_thread(lua_State *L);
/* Run f(L) on the loop thread and return its results to L's thread: directly
 * when already there; from a pool thread by posting the call and waiting
 * (lock released) until it returned, or, if it parked the thread, until the
 * wake. Errors raised by f are raised again on the calling thread. Call it
 * before touching the stack. */
int cs__on_loop(lua_State *L, lua_CFunction f);
/* luaL_setfuncs() whose functions always run on the loop thread. */
void cs__setfuncs_on_loop(lua_State *L, const luaL_Reg *l);
/* Inside a call run for a pool thread: park that thread on s's wait w; the
 * results come with cs__wake(s, n). Returns the value for f to return. */
int cs__park(lua_State *L, cs_sock *s, enum cs_wait w);
/* Inside a call run for a pool thread: park it until s's queue drains. */
int cs__park_writer(lua_State *L, cs_sock *s);
/* Wake a parked pool thread whose nvals results are pushed onto t->wl. */
void cs__unpark(cs_lthread *t);
/* A pool of pool threads of its own (ba.thread.create, the HTTP pages). */
struct cs_lpool *cs__pool_new(cs_vm *vm, unsigned max);
/* Queue the function on top of L (popped) as a job of pool. Returns the
 * jobs waiting or running in the pool, or -errno (-ESHUTDOWN, -ENOMEM). */
int cs__pool_submit(lua_State *L, struct cs_lpool *pool);
/* Stop every pool thread: queued jobs are dropped, parked threads get
 * "sysshutdown", and the loop keeps running posts until all exited. */
void cs__threads_stop(cs_vm *vm);
/* Create vm->lock, taken by the calling (loop) thread, and hook it to the
 * loop's wait. */
void cs__vm_lock_init(cs_vm *vm);
void cs__threads_shutdown(cs_vm *vm);
/* Free the pools (after lua_close, and only when no thread is left). */
void cs__threads_free(cs_vm *vm);
/* The pool thread on whose behalf L runs on the loop thread (inside
 * cs__on_loop), or NULL: code that such a call starts in turn (a cosocket
 * it resumes) runs for nobody's pool thread. */
static inline cs_lthread *cs__caller(lua_State *L, const cs_vm *vm)
{
	cs_lthread *t = vm->caller;
	return t && t->wl == L ? t : NULL;
}

/* The state a waiter's results go to: a parked pool thread or the coroutine. */
static inline lua_State *cs__waiter(const cs_sock *s) { return s->blocker ? s->blocker->wl : s->co; }

/* vm.c */
cs_vm *cs__vm(lua_State *L);
void cs__log(cs_vm *vm, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The cosocket running on thread L, or NULL. */
static inline cs_sock *cs__current(lua_State *L) { return *(cs_sock **)lua_getextraspace(L); }
/* Give sock (the userdata at sockidx) a new coroutine running the function
 * below the nargs arguments on top of L (all popped), and run it until it
 * first waits.
 * Returns true when it is waiting, false when it already finished. */
bool cs__start(lua_State *L, int sockidx, cs_sock *sock, int nargs);
/* The coroutine ended: forget it and drop the socket's self reference. */
void cs__release_coroutine(cs_sock *sock);
/* The socket object is being collected: forget its coroutine. */
void cs__forget_coroutine(cs_sock *sock);
/* Drop / take the registry reference that keeps an active cosocket alive. */
void cs__unpin(cs_sock *sock);
void cs__pin(lua_State *L, int idx, cs_sock *sock);
/* End sock's wait: its coroutine resumes with the nvals values already
 * pushed onto sock->co. */
void cs__wake(cs_sock *sock, int nvals);
/* Mark sock as waiting for w and yield from the C function. */
int cs__wait(lua_State *L, cs_sock *sock, enum cs_wait w);
/* Resume sock's coroutine now with nargs values on its stack; returns false
 * when the coroutine ended. from is the running thread, or NULL. */
bool cs__resume(cs_sock *sock, lua_State *from, int nargs);
/* Report a Lua error from thread co (traceback included) as one log line. */
void cs__report(cs_vm *vm, lua_State *co, const char *what);
/* Push nil, msg and return 2: an I/O failure as Lua sees it. */
int cs__fail(lua_State *L, const char *msg);
/* Push nil, msg, why and return 3: the failure with the system's reason. */
int cs__fail_why(lua_State *L, const char *msg, const char *why);

/* socket.c */
int cs__open_socket(lua_State *L);
/* Detach sock from its conn and close the conn; wake whoever waits on it
 * with nil,err. graceful: flush queued bytes first. Returns false when
 * there was nothing to close. */
bool cs__sock_close(cs_sock *sock, const char *err, bool graceful);
/* The coroutine is over: drop its references, close the socket. */
void cs__sock_finished(cs_sock *sock);
/* cs_vm_drain()'s part for listeners: they stop accepting. */
void cs__sock_drain_all(cs_vm *vm);
/* cs_vm_drain()'s part for HTTP servers: connections idle after an answer
 * close; the others close after their next answer (keep-alive is off
 * while draining). */
void cs__http_drain_all(cs_vm *vm);
void cs__sock_shutdown_all(cs_vm *vm);
/* Push a new socket object, taking over conn (may be NULL). */
cs_sock *cs__push_sock(lua_State *L, cs_vm *vm, enum cs_kind kind, cs_conn *conn);
/* s gained (d = 1) or lost (d = -1) its conn: the vm's socket counts. */
static inline void cs__sock_count(cs_sock *s, int d)
{
	s->vm->active_socks += (unsigned)d;
	s->vm->socks_by_kind[s->kind] += (unsigned)d;
}
/* ba.sleep(ms) in a cosocket: only that coroutine waits. */
int cs__sock_sleep(lua_State *L, cs_sock *sock, lua_Integer ms);
/* check the argument at idx is a socket object */
cs_sock *cs__check_sock(lua_State *L, int idx);
/* The stream ended or failed while reading: close s (unless a clean end
 * on a halfclose socket), push nil, err [, why] and return their count. */
int cs__read_failed(lua_State *L, cs_sock *s, bool clean, const char *err, const char *why);
/* s waits in CS_WAIT_READ: run fill (read_now's contract: push the results
 * and return their count, or 0 to go on waiting) onto its waiter's stack
 * and wake it when fill had something. */
void cs__wake_reader(cs_sock *s, int (*fill)(lua_State *L, cs_sock *s));
/* What a read gets without waiting (the results, pushed, and their count),
 * or 0 when it must wait: the layers' fill functions in order (WebSocket
 * frames, TLS records, plain bytes). */
int cs__read_now(lua_State *L, cs_sock *s);
/* Queue len bytes at buf, a malloc'd buffer taken over (freed once sent
 * or on failure), encrypted first on a TLS socket. 0 or -errno. */
int cs__sock_send_owned(cs_sock *s, void *buf, size_t len);
/* Push a new socket object that takes over s's connection and its layers
 * (TLS, WebSocket); s is left closed, free to connect again. The active
 * socket count stays: the connection lives on. Not for HTTP connections. */
cs_sock *cs__sock_move(lua_State *L, cs_sock *s);
/* sock_query.c: state, owner, peername, sockname, queuelen, maxsize,
 * setoption and shutdown into the methods table on top; __tostring. */
void cs__sock_query_methods(lua_State *L);
int cs__sock_tostring(lua_State *L);
/* Push the socket object itself. */
void cs__push_self(lua_State *L, cs_sock *s);
/* A wait that the call starting it settled at once (s->wait is READY):
 * take s back from the ready queue (unless a pool thread waited) and
 * return the number of results already pushed. */
int cs__settled_now(cs_sock *s, bool pool_thread);

/* sockaddr.c */
struct cs_resolve {
	cs_job job;
	cs_sock *sock;     /* NULL once the socket gave up waiting */
	char *host;
	char port[8];
	bool ipv6;
	bool halfclose;     /* setoption("halfclose"): peer EOF leaves us able to send */
	bool eof;           /* the peer sent FIN (halfclose sockets only) */
	int gai_err;
	struct addrinfo *res;
};
/* Resolve host:port on a pool thread; the socket's connect continues in
 * cs__connect_resolved(). Returns 0 or -ENOMEM. */
int cs__resolve_start(cs_sock *sock, const char *host, int port, bool ipv6);
/* Blocking resolution (startup code and toip). 0 or EAI_* */
int cs__resolve_now(const char *host, int port, bool ipv6, bool passive, struct addrinfo **res);
void cs__connect_resolved(cs_sock *sock, struct addrinfo *res, int gai_err);
/* "a.b.c.d" / "::1" and port of a sockaddr into buf; returns port. */
int cs__addr_string(const struct sockaddr *sa, char *buf, size_t len, bool *ipv6);
/* "addr:port" of fd's peer (or its own end) into buf; the port, or -1. */
int cs__fd_endpoint(int fd, bool peer, char *buf, size_t len);
/* Open a listening TCP socket on intf (NULL: every address) and port, from
 * the daemon's listen source when it has one (fdname picks a systemd
 * socket by name there), else here, with SO_REUSEPORT under a master.
 * Sets *shared when other processes hold the socket too. 0 or -errno. */
int cs__bind_listener(cs_vm *vm, const char *intf, int port, bool ipv6, const char *fdname,
		      int *fd_out, bool *shared);

/* timer.c */
int cs__open_timer(lua_State *L);

/* ba.c */
int cs__open_ba(lua_State *L);

/* udp.c */
int cs__udpcon_any(lua_State *L);
int cs__udp_read(lua_State *L, cs_sock *s);
int cs__udp_write(lua_State *L, cs_sock *s, const char *data, size_t len);
int cs__udp_sendto(lua_State *L);
int cs__udp_setoption(lua_State *L, cs_sock *s, const char *name, int *r);
void cs__udp_readable(cs_sock *s);

/* codec.c: ba.rnd*, ba.b64*, ba.urlencode into the table on top */
void cs__open_codec(lua_State *L);
void cs__rng_free(cs_vm *vm);

/* bytearray.c */
int cs__open_bytearray(lua_State *L);
/* The view of the bytearray at idx (NULL when it is not one). */
const void *cs__bytearray_view(lua_State *L, int idx, size_t *len);

/* json.c */
int cs__open_json(lua_State *L);

/* tls.c: the SharkSSL objects and ba.tls */
#define CS_SHARK_MT "SharkSSL"
struct cs_shark {
	struct cs_tls_ctx *ctx;
	uint32_t handshake_ms;  /* longest a handshake may take */
	char *alpn;             /* client: protocols offered by default */
	bool server;
};
/* ba.create.{sharkssl,sharkcert,certstore}, ba.sharkclient, ba.tls into
 * the ba table on top. */
void cs__open_tls(lua_State *L);
/* The SharkSSL object at idx, or NULL when it is not one. */
struct cs_shark *cs__to_shark(lua_State *L, int idx);

/* tls_sock.c: TLS under a socket */
/* Listener: hand every accepted socket a server session. */
int cs__tls_listen(lua_State *L, cs_sock *s, struct cs_shark *sh);
/* Accepted from a TLS listener: start the server handshake. */
void cs__tls_accepted(cs_sock *s, cs_sock *listener);
/* connect: remember the client object (not a server's: the caller checks);
 * the handshake runs once connected. 0 or -ENOMEM. */
int cs__tls_prepare_connect(cs_sock *s, struct cs_shark *sh, int port, const char *alpn);
/* TCP connected and s->tls is set: start the handshake instead of waking
 * the connect's waiter (who then gets the socket once it completes). */
void cs__tls_connected(cs_sock *s);
/* Top-level code: connect's blocking handshake on fd before it goes under
 * the loop. 0 or a negative cs_tls status. */
int cs__tls_connect_blocking(cs_sock *s, int fd, int timeout_ms);
/* read_now() for a TLS socket. */
int cs__tls_fill(lua_State *L, cs_sock *s);
/* One decrypted record (valid until the next pull on any socket): > 0
 * bytes at *data; -EAGAIN: nothing yet (a receive is armed); 0: the peer's
 * close_notify; other < 0: failed. On 0 and failures *err and *why (may
 * be NULL) are read's error values. */
ssize_t cs__tls_pull(cs_sock *s, const char **data, const char **err, const char **why);
/* The connection delivered ciphertext (n > 0), its end (0) or an error. */
void cs__tls_received(cs_sock *s, const char *data, ssize_t n);
/* Encrypt and queue (or, during the handshake, hold) len bytes.
 * 1 or -errno. */
int cs__tls_send(cs_sock *s, const char *data, size_t len);
/* Plaintext held back until the handshake completes. */
size_t cs__tls_pending(const cs_sock *s);
/* The handshake still runs (recv must stay armed). */
bool cs__tls_handshaking(const cs_sock *s);
/* The socket timer fired: returns true when it was the handshake's
 * deadline (handled), false to treat it as usual; clip_timeout() keeps a
 * read's timer from outliving that deadline. */
bool cs__tls_timer(cs_sock *s);
/* A read is about to wait, ms (< 0: for ever): arm the socket timer for
 * its timeout or the handshake deadline, whichever comes first. */
void cs__tls_arm_read(cs_sock *s, int64_t ms);
/* Closing: queue close_notify (graceful), free the session. */
void cs__tls_closing(cs_sock *s, bool graceful);
/* A read on a closed socket: push the TLS error that closed it (once) and
 * return the count of values, or 0 when there is none. */
int cs__tls_take_error(lua_State *L, cs_sock *s);
/* The handshake failed before anyone read: accept handed out a socket
 * whose first read reports why. */
bool cs__tls_failed(const cs_sock *s);
/* The socket object is collected. */
void cs__tls_free(cs_sock *s);
/* certificate, cipher, trusted, isresumed, relsession, upgrade, alpn */
void cs__tls_methods(lua_State *L);

/* ws_sock.c: the WebSocket layer under a socket */
#define CS_WS_DEFAULT_MAX_FRAME 0xFFFFu
/* Make the TCP socket s a WebSocket: server (the peer's frames arrive
 * masked) or client (ours go masked); pending[0..len) are bytes already
 * read past the handshake, parsed before anything else. max_frame limits
 * received payloads (0: CS_WS_DEFAULT_MAX_FRAME). 0 or -ENOMEM. */
int cs__ws_attach(cs_sock *s, bool server, const char *pending, size_t len, uint64_t max_frame);
/* read_now() for a WebSocket. */
int cs__ws_fill(lua_State *L, cs_sock *s);
/* The connection delivered bytes (n > 0), its end (0) or an error. */
void cs__ws_received(cs_sock *s, const char *data, ssize_t n);
/* One frame (opcode, FIN set) around data, masked when s is a client:
 * malloc'd, its size in *frame_len; NULL when out of memory. */
uint8_t *cs__ws_frame(cs_sock *s, uint8_t opcode, const void *data, size_t len, size_t *frame_len);
/* The limit on received (and sent) payloads. */
uint64_t cs__ws_max_frame(const cs_sock *s);
/* Our Close went out: nothing more may be sent. */
bool cs__ws_close_sent(const cs_sock *s);
/* Closing: queue our Close (1000) unless one was sent (graceful only). */
void cs__ws_closing(cs_sock *s, bool graceful);
void cs__ws_free(cs_sock *s);
/* websocket, ping, maxframe */
void cs__ws_methods(lua_State *L);

/* http_server.c: cosockd.http{...}, into the cosockd table on top */
void cs__open_http(lua_State *L);
/* The connection delivered bytes (n > 0), its end (0) or an error. */
void cs__http_received(cs_sock *s, const char *data, ssize_t n);
/* The socket closes: forget the HTTP connection state. */
void cs__http_closing(cs_sock *s);
/* The socket's timer fired (keep-alive or request deadline). */
void cs__http_timer(cs_sock *s);
/* Every queued byte went out (on_drain). */
void cs__http_drained(cs_sock *s);
/* The VM closes: free the connection state without touching Lua. */
void cs__http_free(cs_sock *s);
/* ba.socket.req2sock and sock2req into the table on top. */
void cs__open_http_socket(lua_State *L);

/* httpc.c: require"httpc" (preloaded) and ba.socket.http2sock into the
 * ba.socket table on top */
void cs__open_httpc(lua_State *L);

/* io.c: ba.openio */
void cs__open_io(lua_State *L);
bool cs__is_io(lua_State *L, int idx);
/* Read name through the IO object at idx (or, when idx is 0, from the file
 * system) into a malloc'd buffer. NULL with *err set on failure. */
char *cs__io_read(lua_State *L, int idx, const char *name, size_t *len, const char **err);
void cs__io_free(cs_vm *vm);

#endif
