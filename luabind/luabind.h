/*
 * luabind.h - the `ba` Lua runtime over one dispatcher loop: what the daemon
 * sees of luabind/. One cs_vm per worker: a lua_State, its cosockets and
 * timers, and the scheduler that resumes them as the loop reports progress.
 */
#ifndef CS_LUABIND_H
#define CS_LUABIND_H

#include <stdbool.h>
#include <sys/socket.h>

#include "dispatch.h"

typedef struct cs_vm cs_vm;

/* A socket ba.socket.bind (and so cosockd.http) or a UDP bind asks for. */
struct cs_listen_req {
	int type;                    /* SOCK_STREAM (listening) or SOCK_DGRAM */
	const struct sockaddr *addr; /* resolved from intf; a wildcard without */
	socklen_t addrlen;
	bool any_addr;               /* no intf was given */
	const char *fdname;          /* bind's fdname option, or NULL */
};

/* Where bound sockets come from when the daemon provides them (socket
 * activation, a master that keeps them across reloads). open() returns a
 * bound, non-blocking, close-on-exec socket of req->type (listening for
 * TCP), or -errno; it sets *shared when another process holds the socket
 * too, which then is only ever closed here, never shut down or connected. */
struct cs_listen_source {
	int (*open)(void *ctx, const struct cs_listen_req *req, bool *shared);
	void *ctx;
};

/* Priorities, as syslog/sd-daemon numbers them. */
enum { CS_LOG_ERR = 3, CS_LOG_WARNING = 4, CS_LOG_NOTICE = 5, CS_LOG_INFO = 6, CS_LOG_DEBUG = 7 };

struct cs_vm_config {
	cs_loop *loop;
	/* Where trace(), tracep() and error reports go: one record, no newline. */
	void (*log)(int prio, const char *line);
	unsigned resolver_threads; /* 0: 2 */
	unsigned threads;          /* ba.thread.run's pool size; 0: 8 */
	/* Under a master (--workers): this worker's number (1..workers) and
	 * how many there are; listeners then set SO_REUSEPORT. 0, 0: a single
	 * process, listeners bind exclusively. */
	unsigned worker, workers;
	/* Root of ba.openio("vm"); NULL: $STATE_DIRECTORY, else the XDG
	 * state directory, else /var/lib/cosockd. */
	const char *state_dir;
	/* NULL: listeners are bound here (SO_REUSEPORT under a master). */
	const struct cs_listen_source *listen;
};

int cs_vm_create(const struct cs_vm_config *cfg, cs_vm **out);

/* Close every socket at once and free the Lua state. Run it before
 * cs_loop_destroy(). */
void cs_vm_destroy(cs_vm *vm);

/* The conn callbacks luabind needs; give them to cs_loop_create() together
 * with a pointer that cs_vm_attach() later fills in. */
extern const struct cs_conn_ops cs_vm_conn_ops;

/* Run a script (file, or chunk with a name) as the `lua` command would:
 * the global `arg` holds argv[0..argc-1] with argv[script_index] at arg[0].
 * Returns 0, or -1 after logging the error. */
int cs_vm_run_file(cs_vm *vm, const char *path, int argc, char **argv, int script_index);
int cs_vm_run_chunk(cs_vm *vm, const char *chunk, size_t len, const char *name,
		    int argc, char **argv, int script_index);

/* Make `require(name)` load the Lua chunk (which must stay valid). */
void cs_vm_preload(cs_vm *vm, const char *name, const char *chunk, size_t len);

/* Resume every cosocket whose wait ended. Returns true when more became
 * ready meanwhile (call again before sleeping). */
bool cs_vm_run_ready(cs_vm *vm);

/* Whether anything can still happen: a cosocket waiting on I/O, a timer, a
 * resolution in flight or a conn still flushing. */
bool cs_vm_busy(cs_vm *vm);

/* Begin an orderly stop: listeners close, every waiting cosocket that is not
 * disabled is resumed with nil,"sysshutdown", and later waits fail at once. */
void cs_vm_shutdown(cs_vm *vm);

/* Begin a graceful stop (a reload's old worker): listeners stop taking
 * connections (accept fails with "sysshutdown"; what the kernel queued
 * stays for the other processes that hold the socket, or, on a socket
 * nobody else holds, is accepted first), HTTP servers close idle
 * keep-alive
 * connections and end the others after their current answer; established
 * connections go on. Idempotent. */
void cs_vm_drain(cs_vm *vm);

/* Open connections: TCP sockets other than listeners, HTTP and WebSocket
 * connections included, and while draining the queued connections a
 * listener is still to accept. */
unsigned cs_vm_connections(const cs_vm *vm);

/* "Lua 5.4.4": the Lua release cosockd was built with. */
const char *cs_vm_lua_release(void);

/* cosockd.exit(code) was called: returns true and sets *code. */
bool cs_vm_exit_requested(const cs_vm *vm, int *code);

#endif
