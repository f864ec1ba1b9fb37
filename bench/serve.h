/*
 * serve.h - what `cosockd-bench serve` shares between its loop (cmd_serve.c)
 * and the kinds kept in files of their own: the HTTP responder
 * (serve_http.c) and the WebSocket echo server (serve_ws.c).
 *
 * Every kind of server is a struct serve_kind: the size of its connection
 * (which begins with a struct serve_conn) and service(), called in the
 * connection's thread after every epoll edge (EPOLLIN and EPOLLOUT are both
 * watched, edge-triggered). service() must leave the socket as edge-
 * triggered epoll requires: read until EAGAIN unless it stops reading on
 * purpose (flow control), in which case an EPOLLOUT edge must be due.
 */
#ifndef CS_BENCH_SERVE_H
#define CS_BENCH_SERVE_H

#include <stddef.h>
#include <stdint.h>

#define SERVE_SCRATCH (64 * 1024)

struct serve_conn {
	int fd;
	/* The thread's list of open connections: what is open at exit stays
	 * reachable, so leak checkers do not report it. */
	struct serve_conn *prev, *next;
};

struct serve_opts {
	uint64_t body;  /* http: response body bytes */
	uint64_t chunk; /* source: bytes per write */
};

struct serve_kind {
	const char *name;
	size_t conn_size;
	/* Shared, read-only state, made once before any thread starts.
	 * Returns 0, or -1 when out of memory. NULL: none. */
	int (*setup)(const struct serve_opts *o);
	/* Serve after an edge; scratch is the thread's SERVE_SCRATCH bytes.
	 * Returns 0 to keep the connection, -1 to close it. */
	int (*service)(struct serve_conn *c, uint32_t events, unsigned char *scratch);
	/* Free what the connection holds besides itself; NULL: nothing. */
	void (*fini)(struct serve_conn *c);
};

extern const struct serve_kind cs__serve_http;
extern const struct serve_kind cs__serve_ws;

#endif
