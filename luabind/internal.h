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
 */
#ifndef CS_LUABIND_INTERNAL_H
#define CS_LUABIND_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>
#include <netdb.h>
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
};

enum cs_kind { CS_SOCK_NONE, CS_SOCK_TCP, CS_SOCK_LISTEN };

struct cs_resolve;

struct cs_sock {
	cs_vm *vm;
	cs_conn *conn;      /* NULL: never had an OS socket, or closed */
	uint8_t kind;       /* enum cs_kind */
	char mode;          /* 0 = not a cosocket, 'r' or 's' */
	uint8_t wait;       /* enum cs_wait */
	bool had_conn;      /* was connected once (so "closed", not "socket-less") */
	bool dead_read;     /* a read already reported the socket dead */
	bool rx_paused;     /* disable()d from outside: receive events stopped */
	bool ipv6;
	bool halfclose;     /* setoption("halfclose"): peer EOF leaves us able to send */
	bool eof;           /* the peer sent FIN (halfclose sockets only) */
	lua_State *co;      /* its coroutine (kept alive by user value 1) */
	int self_ref;       /* registry ref while the cosocket is active */
	int nresume;        /* values pushed for the pending resume */
	cs_timer timer;     /* read timeout, sleep, connect timeout */
	struct cs_sock *next, *prev;        /* vm->cosockets list */
	struct cs_sock *ready_next;         /* vm ready queue */
	struct cs_sock *wnext;              /* writers waiting on a queue */
	struct cs_sock *writers, *writers_tail; /* cosockets waiting on our queue */
	struct cs_sock *write_target;       /* queue we wait on */
	size_t queue_limit; /* queuelen(): non-cosocket writers stop here */
	uint32_t maxsize;   /* maxsize(): accepted and remembered */
	struct cs_resolve *resolve; /* name resolution in flight */
	struct addrinfo *addrs, *next_addr; /* connect candidates */
	char *intf;         /* connect: local address to bind */
	uint32_t connect_ms;
	uint32_t id;        /* for tostring */
};
typedef struct cs_sock cs_sock;

struct cs_vm {
	lua_State *L;
	cs_loop *loop;
	cs_pool *resolver;
	void (*log)(int prio, const char *line);
	cs_sock *cosockets;          /* every socket with a live coroutine */
	cs_sock *ready_head, *ready_tail;
	unsigned waiting;            /* cosockets waiting on I/O or time */
	unsigned timers;             /* armed ba.timer objects */
	unsigned resolving;          /* resolutions in flight */
	unsigned total_socks, active_socks;
	uint32_t next_id;
	bool shutting_down, closing;
	bool exit_requested;
	int exit_code;
};

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

/* socket.c */
int cs__open_socket(lua_State *L);
/* Detach sock from its conn and close the conn; wake whoever waits on it
 * with nil,err. graceful: flush queued bytes first. Returns false when
 * there was nothing to close. */
bool cs__sock_close(cs_sock *sock, const char *err, bool graceful);
/* The coroutine is over: drop its references, close the socket. */
void cs__sock_finished(cs_sock *sock);
void cs__sock_shutdown_all(cs_vm *vm);

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
/* Parse "[ADDR:]PORT" / "[v6]:PORT" (used by the daemon too). */
int cs__bind_listener(const char *intf, int port, bool ipv6, int *fd_out);

/* timer.c */
int cs__open_timer(lua_State *L);

/* ba.c */
int cs__open_ba(lua_State *L);

#endif
