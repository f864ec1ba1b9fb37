/*
 * httpd.h - what the HTTP server's files share (http_server.c: the server
 * object and its connections; http_page.c: requests, responses, pages).
 *
 * Ownership:
 *  - A connection (cs_http_conn) hangs off its socket (sock->http) and
 *    pins the socket object with a registry reference while HTTP owns it.
 *  - Each request a page runs is an exchange: a Lua userdata (so that a
 *    job dropped at shutdown still frees it) holding a copy of the head and
 *    body and the response being built. The connection and the exchange
 *    point at each other; whichever goes first clears the other's pointer.
 *  - The connection reads nothing while a page runs: pipelined requests
 *    wait in its buffer (or in the kernel) until the response is done.
 */
#ifndef CS_LUABIND_HTTPD_H
#define CS_LUABIND_HTTPD_H

#include "http.h"
#include "internal.h"

#define CS_HTTP_SERVER_MT "cosockd.http.server"
#define CS_HTTP_EXCHANGE_MT "cosockd.http.exchange"

struct cs_http_server {
	cs_vm *vm;
	struct cs_lpool *pool;      /* runs the pages */
	int self_ref;               /* the server object, while open */
	int pages_ref;              /* path -> function (srv:page) */
	int lsp_ref;                /* file path -> {fn, mtime} */
	int page_tables_ref;        /* path -> the page's persistent `page` table */
	int auth_ref;               /* the auth table, or LUA_NOREF */
	int listener_ref;           /* the listening socket object */
	char *root;                 /* the web root, resolved; NULL: none */
	char **index;               /* default documents */
	unsigned nindex;
	char **protect;             /* path prefixes that need a user */
	unsigned nprotect;
	char *realm;
	struct cs_http_limits limits;
	uint64_t max_body;
	uint32_t keepalive_ms, header_ms, send_ms;
	uint64_t ws_max_frame;
	int port;
	bool closed;
	struct cs_http_request *scratch; /* the loop thread's parse of a head */
};

enum cs_http_state {
	CS_HTTP_HEAD,  /* waiting for (the rest of) a request head */
	CS_HTTP_BODY,  /* head read, waiting for the body */
	CS_HTTP_RUN,   /* a page or file handler has the request */
};

struct cs_http_exchange;

struct cs_http_conn {
	struct cs_http_server *srv;
	cs_sock *sock;
	int sock_ref;
	char *buf;                  /* received: buf[0..len) */
	size_t len, cap;
	size_t head_len;            /* the current request's head */
	size_t decoded;             /* chunked: body bytes decoded after the head */
	size_t body_want;           /* Content-Length of the current request */
	struct cs_http_chunked chunked;
	bool is_chunked, continue_sent;
	ssize_t eof;                /* 1 open; 0 the peer ended; < 0 failed */
	uint8_t state;              /* enum cs_http_state */
	uint64_t started;           /* loop time the current request began; 0: idle */
	size_t parsed_len;          /* bytes the last parse of the head saw */
	bool line_done;             /* the request line has ended */
	bool draining;              /* waiting for answers to drain before reading on */
	uint32_t served;
	struct cs_http_exchange *ex;
	struct cs_http_conn *next, *prev; /* vm->http_conns */
};

struct cs_http_exchange {
	struct cs_http_server *srv;
	struct cs_http_conn *conn;  /* NULL once the connection closed or was taken */
	char *head;                 /* copy of the request head, then the body */
	size_t head_len, body_len;
	size_t consumed;            /* bytes of the connection's buffer it used */
	struct cs_http_request req; /* parsed from head */
	char *path;                 /* percent-decoded path */
	const char *query;
	size_t query_len;
	char *user;                 /* authenticated user, or NULL */
	bool head_only;             /* a HEAD request: no body goes out */
	bool keep_alive;
	/* the response */
	int status;
	char *rhead;                /* header lines set by the page */
	size_t rhead_len, rhead_cap;
	char *out;                  /* body bytes not yet sent */
	size_t out_len, out_cap;
	int64_t content_length;     /* -1: not set */
	bool committed, chunked, has_type, finished, taken, dead;
	bool aborted;               /* the page failed after the head went out */
};

/* Answers a client leaves unread beyond this hold back its page (which
 * waits for the drain) and its pipelined requests (not read meanwhile). */
#define CS_HTTP_BACKLOG_BYTES (256u << 10)
static inline bool cs__http_backlogged(const cs_sock *s)
{
	return s->conn && cs_conn_queued(s->conn) + cs__tls_pending(s) > CS_HTTP_BACKLOG_BYTES;
}

/* http_server.c */
/* Send (from the loop thread) what the exchange has: the head when not yet
 * committed and, with last, the end of the body. 0, or -EPIPE when the
 * connection is gone. */
int cs__http_send(struct cs_http_exchange *ex, bool last);
/* Runs on the loop thread (cs__on_loop) when the exchange at 1 is done:
 * the rest of the response goes out, then keep-alive or close. */
int cs__http_finish(lua_State *L);
void cs__http_exchange_type(lua_State *L);
struct cs_http_exchange *cs__http_check_exchange(lua_State *L, int idx);

/* http_page.c */
/* The job run on the HTTP pool for the exchange at upvalue 1. */
int cs__http_run(lua_State *L);
/* A string builder append; false when out of memory. */
bool cs__http_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n);
/* The request/response objects and their metatables. */
void cs__http_page_types(lua_State *L);
/* Push an error page (status, message) into the exchange's response. */
void cs__http_error_page(struct cs_http_exchange *ex, int status, const char *msg);

#endif
