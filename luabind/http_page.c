/*
 * http_page.c - what runs on the HTTP pool for one request: access
 * control, the choice of handler (a registered function, an .lsp page or
 * a static file), and the request and response objects pages use.
 *
 * Everything here runs on a pool thread holding the VM lock, so blocking
 * calls are allowed (the seeds' LSP model). Bytes reach the connection
 * only through cs__on_loop(): the loop thread queues them, and a page
 * that has more than CS_HTTP_BACKLOG_BYTES queued waits for the drain, so a
 * large response never piles up in memory.
 *
 * LSP pages are translated (ws/lsp.h) and compiled once per file and
 * modification time; each request runs the compiled function with an
 * environment of its own (request, response, print, page, app), so two
 * pages running at once never share globals.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "lsp.h"
#include "mime.h"

#define REQUEST_MT "cosockd.http.request"
#define RESPONSE_MT "cosockd.http.response"
#define OUT_FLUSH_BYTES (64u << 10) /* buffered page output sent at this size */
#define FILE_CHUNK (64u << 10)

bool cs__http_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 256;
		while (c < *len + n)
			c *= 2;
		char *b = realloc(*buf, c);
		if (!b)
			return false;
		*buf = b;
		*cap = c;
	}
	if (n)
		memcpy(*buf + *len, data, n);
	*len += n;
	return true;
}

/* ---- sending from the pool thread ------------------------------------------ */

/* On the loop thread: send what the exchange at 1 has; a pool thread with
 * too much queued waits for the drain. */
static int send_on_loop(lua_State *L)
{
	struct cs_http_exchange *ex = cs__http_check_exchange(L, 1);
	if (cs__http_send(ex, false) < 0)
		return 0;
	cs_sock *s = ex->conn->sock;
	if (cs__http_backlogged(s) && cs__caller(L, s->vm)) {
		/* wait for the drain, for send_timeout ms (cs__http_timer) */
		cs_timer_start(s->vm->loop, &s->timer, ex->srv->send_ms);
		return cs__park_writer(L, s);
	}
	return 0;
}

/* The exchange's userdata is the object's user value 1. */
static struct cs_http_exchange *obj_exchange(lua_State *L, int idx, const char *mt)
{
	luaL_checkudata(L, idx, mt);
	lua_getiuservalue(L, idx, 1);
	struct cs_http_exchange *ex = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return ex;
}

static int on_loop_call(lua_State *L) { return cs__on_loop(L, lua_tocfunction(L, lua_upvalueindex(1))); }

/* Run f on the loop thread with the exchange userdata on top of L as its
 * only argument (popped). A call frame of its own keeps the page's stack
 * out of cs__on_loop's arguments, and an error in f is raised here, on
 * the page's running thread, like any socket call's. */
static void call_on_loop(lua_State *L, lua_CFunction f)
{
	lua_pushcfunction(L, f);
	lua_pushcclosure(L, on_loop_call, 1);
	lua_insert(L, -2);
	lua_call(L, 1, 0);
}

/* Flush the response object at idx. false: the connection is gone. */
static bool flush_response(lua_State *L, int idx)
{
	struct cs_http_exchange *ex = obj_exchange(L, idx, RESPONSE_MT);
	if (ex->dead || ex->taken || ex->finished)
		return false;
	lua_getiuservalue(L, idx, 1);
	call_on_loop(L, send_on_loop);
	return !ex->dead;
}

static bool out_append(lua_State *L, int idx, struct cs_http_exchange *ex, const char *p, size_t n)
{
	if (ex->head_only || ex->taken)
		return true; /* no body, or the response is void (req2sock) */
	if (!cs__http_append(&ex->out, &ex->out_len, &ex->out_cap, p, n))
		luaL_error(L, "response: out of memory");
	if (ex->out_len >= OUT_FLUSH_BYTES)
		return flush_response(L, idx);
	return true;
}

static bool add_header(struct cs_http_exchange *ex, const char *name, const char *value)
{
	return cs__http_append(&ex->rhead, &ex->rhead_len, &ex->rhead_cap, name, strlen(name)) &&
	       cs__http_append(&ex->rhead, &ex->rhead_len, &ex->rhead_cap, ": ", 2) &&
	       cs__http_append(&ex->rhead, &ex->rhead_len, &ex->rhead_cap, value, strlen(value)) &&
	       cs__http_append(&ex->rhead, &ex->rhead_len, &ex->rhead_cap, "\r\n", 2);
}

void cs__http_error_page(struct cs_http_exchange *ex, int status, const char *msg)
{
	char body[512];
	int n = snprintf(body, sizeof(body), "<html><body><h1>%d</h1><p>%s</p></body></html>\n", status,
			 msg ? msg : "");
	ex->status = status;
	ex->out_len = 0;
	ex->rhead_len = 0;
	ex->has_type = true;
	add_header(ex, "Content-Type", "text/html; charset=utf-8");
	cs__http_append(&ex->out, &ex->out_len, &ex->out_cap, body, (size_t)n);
	ex->content_length = -1;
}

/* ---- the request object ------------------------------------------------------ */

static struct cs_http_exchange *check_req(lua_State *L) { return obj_exchange(L, 1, REQUEST_MT); }

static int rq_method(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	lua_pushlstring(L, ex->req.method, ex->req.method_len);
	return 1;
}

static int rq_uri(lua_State *L)
{
	lua_pushstring(L, check_req(L)->path);
	return 1;
}

static int rq_url(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	lua_pushlstring(L, ex->req.target, ex->req.target_len);
	return 1;
}

static int rq_version(lua_State *L)
{
	lua_pushstring(L, check_req(L)->req.minor_version ? "1.1" : "1.0");
	return 1;
}

static int rq_header(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	if (!lua_isnoneornil(L, 2)) {
		const struct cs_http_header *h =
			cs_http_find_header(ex->req.headers, ex->req.num_headers, luaL_checkstring(L, 2));
		if (h)
			lua_pushlstring(L, h->value, h->value_len);
		else
			lua_pushnil(L);
		return 1;
	}
	lua_createtable(L, 0, (int)ex->req.num_headers);
	for (unsigned i = 0; i < ex->req.num_headers; i++) {
		const struct cs_http_header *h = &ex->req.headers[i];
		lua_pushlstring(L, h->name, h->name_len);
		lua_pushlstring(L, h->value, h->value_len);
		lua_rawset(L, -3);
	}
	return 1;
}

/* Decode the name=value pairs of s into the table on top. */
static void add_params(lua_State *L, const char *s, size_t len)
{
	size_t pos = 0;
	const char *n, *v;
	size_t nl, vl;
	while (cs_http_next_param(s, len, &pos, &n, &nl, &v, &vl)) {
		char *buf = malloc(nl + vl + 2);
		if (!buf)
			luaL_error(L, "request: out of memory");
		size_t dn = cs_http_unescape(buf, n, nl, true);
		size_t dv = cs_http_unescape(buf + nl + 1, v, vl, true);
		lua_pushlstring(L, buf, dn);
		lua_pushlstring(L, buf + nl + 1, dv);
		free(buf);
		lua_rawset(L, -3);
	}
}

static bool form_body(const struct cs_http_exchange *ex)
{
	const struct cs_http_header *ct =
		cs_http_find_header(ex->req.headers, ex->req.num_headers, "Content-Type");
	static const char form[] = "application/x-www-form-urlencoded";
	return ct && ct->value_len >= sizeof(form) - 1 && !strncasecmp(ct->value, form, sizeof(form) - 1);
}

/* request:data() -> table; request:data(name) -> value */
static int rq_data(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	bool one = !lua_isnoneornil(L, 2);
	lua_settop(L, 2);
	lua_newtable(L);
	if (ex->query)
		add_params(L, ex->query, ex->query_len);
	if (ex->body_len && form_body(ex))
		add_params(L, ex->head + ex->head_len, ex->body_len);
	if (one) {
		lua_pushvalue(L, 2);
		lua_rawget(L, -2);
	}
	return 1;
}

static int rq_rawrdbuf(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	lua_pushlstring(L, ex->head + ex->head_len, ex->body_len);
	return 1;
}

/* request:cookie(name) -> value */
static int rq_cookie(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	size_t want_len;
	const char *want = luaL_checklstring(L, 2, &want_len);
	for (unsigned i = 0; i < ex->req.num_headers; i++) {
		const struct cs_http_header *h = &ex->req.headers[i];
		if (h->name_len != 6 || strncasecmp(h->name, "cookie", 6))
			continue;
		const char *p = h->value, *end = h->value + h->value_len;
		while (p < end) {
			while (p < end && (*p == ' ' || *p == ';'))
				p++;
			const char *eq = memchr(p, '=', (size_t)(end - p));
			const char *semi = memchr(p, ';', (size_t)(end - p));
			if (!semi)
				semi = end;
			if (eq && eq < semi && (size_t)(eq - p) == want_len && !memcmp(p, want, want_len)) {
				lua_pushlstring(L, eq + 1, (size_t)(semi - eq - 1));
				return 1;
			}
			p = semi;
		}
	}
	lua_pushnil(L);
	return 1;
}

static int rq_peername(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	char buf[80];
	int port;
	if (!ex->conn || !ex->conn->sock->conn ||
	    (port = cs__fd_endpoint(cs_conn_fd(ex->conn->sock->conn), true, buf, sizeof(buf))) < 0)
		return 0;
	char *colon = strrchr(buf, ':');
	if (colon)
		*colon = 0;
	if (buf[0] == '[') {
		memmove(buf, buf + 1, strlen(buf));
		buf[strlen(buf) - 1] = 0;
	}
	lua_pushstring(L, buf);
	lua_pushinteger(L, port);
	return 2;
}

static int rq_user(lua_State *L)
{
	struct cs_http_exchange *ex = check_req(L);
	if (ex->user)
		lua_pushstring(L, ex->user);
	else
		lua_pushnil(L);
	return 1;
}

/* ---- the response object -------------------------------------------------------- */

static struct cs_http_exchange *check_resp(lua_State *L) { return obj_exchange(L, 1, RESPONSE_MT); }

/* Raise unless the head can still change; NULL after req2sock, whose
 * response is void (calls on it are ignored, like writes). */
static struct cs_http_exchange *uncommitted(lua_State *L)
{
	struct cs_http_exchange *ex = check_resp(L);
	if (ex->taken)
		return NULL;
	if (ex->committed)
		luaL_error(L, "response: the head was already sent (after flush)");
	return ex;
}

static int rs_setstatus(lua_State *L)
{
	struct cs_http_exchange *ex = uncommitted(L);
	lua_Integer st = luaL_checkinteger(L, 2);
	luaL_argcheck(L, st >= 100 && st <= 999, 2, "status out of range");
	if (ex)
		ex->status = (int)st;
	return 0;
}

static int rs_setheader(lua_State *L)
{
	struct cs_http_exchange *ex = uncommitted(L);
	const char *name = luaL_checkstring(L, 2);
	const char *value = luaL_tolstring(L, 3, NULL);
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") || !*name)
		return luaL_error(L, "response:setheader: a name or value with CR, LF or ':'");
	if (!ex)
		return 0;
	if (!strcasecmp(name, "Content-Length")) {
		char *end;
		long long n = strtoll(value, &end, 10);
		if (*end || n < 0)
			return luaL_error(L, "response:setheader: bad Content-Length");
		ex->content_length = n;
		return 0;
	}
	if (!strcasecmp(name, "Content-Type"))
		ex->has_type = true;
	if (!add_header(ex, name, value))
		return luaL_error(L, "response: out of memory");
	return 0;
}

static int rs_setcontenttype(lua_State *L)
{
	lua_settop(L, 2);
	lua_pushliteral(L, "Content-Type");
	lua_insert(L, 2);
	return rs_setheader(L);
}

/* Write the tostring of each argument from first on, separated by sep. */
static int write_values(lua_State *L, int first, const char *sep, const char *end)
{
	struct cs_http_exchange *ex = lua_touserdata(L, lua_upvalueindex(1));
	int resp = lua_upvalueindex(2);
	int top = lua_gettop(L);
	if (ex->finished)
		return luaL_error(L, "response: the request is over");
	for (int i = first; i <= top; i++) {
		size_t n;
		const char *p = luaL_tolstring(L, i, &n);
		if (i > first && sep)
			out_append(L, resp, ex, sep, strlen(sep));
		out_append(L, resp, ex, p, n);
		lua_pop(L, 1);
	}
	if (end)
		out_append(L, resp, ex, end, strlen(end));
	return 0;
}

static int rs_write(lua_State *L)
{
	struct cs_http_exchange *ex = check_resp(L);
	if (ex->finished)
		return luaL_error(L, "response: the request is over");
	int top = lua_gettop(L);
	for (int i = 2; i <= top; i++) {
		size_t n;
		const char *p = luaL_tolstring(L, i, &n);
		out_append(L, 1, ex, p, n);
		lua_pop(L, 1);
	}
	return 0;
}

static int rs_flush(lua_State *L)
{
	struct cs_http_exchange *ex = check_resp(L);
	if (ex->finished)
		return luaL_error(L, "response: the request is over");
	lua_pushboolean(L, flush_response(L, 1));
	return 1;
}

static int rs_senderror(lua_State *L)
{
	struct cs_http_exchange *ex = check_resp(L);
	lua_Integer st = luaL_checkinteger(L, 2);
	luaL_argcheck(L, st >= 400 && st <= 599, 2, "an error status is 400..599");
	if (ex->committed) {
		lua_pushboolean(L, 0);
		return 1;
	}
	cs__http_error_page(ex, (int)st, luaL_optstring(L, 3, NULL));
	lua_pushboolean(L, 1);
	return 1;
}

static int rs_sendredirect(lua_State *L)
{
	struct cs_http_exchange *ex = uncommitted(L);
	const char *url = luaL_checkstring(L, 2);
	if (strpbrk(url, "\r\n"))
		return luaL_error(L, "response:sendredirect: a URL with CR or LF");
	if (!ex)
		return 0;
	ex->status = (int)luaL_optinteger(L, 3, 302);
	ex->rhead_len = 0;
	ex->out_len = 0;
	ex->content_length = -1;
	add_header(ex, "Location", url);
	add_header(ex, "Content-Type", "text/html; charset=utf-8");
	ex->has_type = true;
	return 0;
}

static int rs_committed(lua_State *L)
{
	lua_pushboolean(L, check_resp(L)->committed);
	return 1;
}

/* ---- static files ----------------------------------------------------------------- */

static void http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Serve the open file fd (name for its type); closes fd. */
static void serve_file(lua_State *L, int resp, struct cs_http_exchange *ex, int fd, const char *name,
		       const struct stat *st)
{
	bool get = ex->req.method_len == 3 && !memcmp(ex->req.method, "GET", 3);
	if (!get && !ex->head_only) {
		close(fd);
		cs__http_error_page(ex, 405, "Static files answer GET and HEAD only.");
		add_header(ex, "Allow", "GET, HEAD");
		return;
	}
	char date[64];
	http_date(st->st_mtime, date, sizeof(date));
	const struct cs_http_header *ims =
		cs_http_find_header(ex->req.headers, ex->req.num_headers, "If-Modified-Since");
	if (ims) {
		struct tm tm = {0};
		char v[64];
		size_t n = ims->value_len < sizeof(v) - 1 ? ims->value_len : sizeof(v) - 1;
		memcpy(v, ims->value, n);
		v[n] = 0;
		const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (end && !*end && timegm(&tm) >= st->st_mtime) {
			close(fd);
			ex->status = 304;
			add_header(ex, "Last-Modified", date);
			return;
		}
	}
	ex->has_type = true;
	add_header(ex, "Content-Type", cs_mime_type(name, strlen(name)));
	add_header(ex, "Last-Modified", date);
	ex->content_length = st->st_size;
	char *chunk = malloc(FILE_CHUNK);
	if (!chunk) {
		close(fd);
		cs__http_error_page(ex, 503, "Out of memory.");
		return;
	}
	off_t left = ex->head_only ? 0 : st->st_size;
	while (left > 0) {
		ssize_t n = read(fd, chunk, left < (off_t)FILE_CHUNK ? (size_t)left : FILE_CHUNK);
		if (n <= 0)
			break; /* the file shrank: the connection closes short */
		left -= n;
		if (!out_append(L, resp, ex, chunk, (size_t)n) || !flush_response(L, resp))
			break;
	}
	free(chunk);
	close(fd);
	if (left > 0)
		ex->keep_alive = false;
}

/* ---- LSP pages ---------------------------------------------------------------------- */

/* Push the compiled page for file (cached per modification time), or
 * raise with the reason. */
static void push_lsp(lua_State *L, struct cs_http_server *srv, const char *file, const struct stat *st)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, srv->lsp_ref);
	lua_getfield(L, -1, file);
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "mtime");
		lua_getfield(L, -2, "ns");
		bool fresh = lua_tointeger(L, -2) == (lua_Integer)st->st_mtim.tv_sec &&
			     lua_tointeger(L, -1) == (lua_Integer)st->st_mtim.tv_nsec;
		lua_pop(L, 2);
		if (fresh) {
			lua_getfield(L, -1, "fn");
			lua_replace(L, -3);
			lua_pop(L, 1);
			return;
		}
	}
	lua_pop(L, 1);
	const char *err;
	size_t len;
	char *src = cs__io_read(L, 0, file, &len, &err);
	if (!src)
		luaL_error(L, "%s: %s", file, err);
	char msg[160], *lua;
	size_t lua_len;
	lua = cs_lsp_translate(src, len, &lua_len, msg, sizeof(msg));
	free(src);
	if (!lua)
		luaL_error(L, "%s: %s", file, msg);
	static const char prologue[] = "local _ENV = select(3, ...); ";
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addlstring(&b, prologue, sizeof(prologue) - 1);
	luaL_addlstring(&b, lua, lua_len);
	free(lua);
	luaL_pushresult(&b);
	size_t n;
	const char *code = lua_tolstring(L, -1, &n);
	lua_pushfstring(L, "@%s", file);
	int r = luaL_loadbuffer(L, code, n, lua_tostring(L, -1));
	if (r != LUA_OK)
		lua_error(L);
	lua_remove(L, -2);
	lua_remove(L, -2); /* the code */
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, -2);
	lua_setfield(L, -2, "fn");
	lua_pushinteger(L, (lua_Integer)st->st_mtim.tv_sec);
	lua_setfield(L, -2, "mtime");
	lua_pushinteger(L, (lua_Integer)st->st_mtim.tv_nsec);
	lua_setfield(L, -2, "ns");
	lua_setfield(L, -3, file);
	lua_remove(L, -2); /* the cache */
}

static int emit_text(lua_State *L)
{
	size_t n;
	const char *p = luaL_checklstring(L, 1, &n);
	struct cs_http_exchange *ex = lua_touserdata(L, lua_upvalueindex(1));
	if (ex->finished)
		return luaL_error(L, "response: the request is over");
	out_append(L, lua_upvalueindex(2), ex, p, n);
	return 0;
}

static int emit_value(lua_State *L) { return write_values(L, 1, NULL, NULL); }
static int page_print(lua_State *L) { return write_values(L, 1, "\t", "\n"); }

/* Run the page function on top (with the request and response at rq, rs)
 * as an LSP page: fn(emit, emitv, env). */
static void call_lsp(lua_State *L, struct cs_http_exchange *ex, int rq, int rs, const char *path)
{
	lua_pushlightuserdata(L, ex);
	lua_pushvalue(L, rs);
	lua_pushcclosure(L, emit_text, 2);
	lua_pushlightuserdata(L, ex);
	lua_pushvalue(L, rs);
	lua_pushcclosure(L, emit_value, 2);
	lua_createtable(L, 0, 5); /* env */
	lua_pushvalue(L, rq);
	lua_setfield(L, -2, "request");
	lua_pushvalue(L, rs);
	lua_setfield(L, -2, "response");
	lua_pushlightuserdata(L, ex);
	lua_pushvalue(L, rs);
	lua_pushcclosure(L, page_print, 2);
	lua_setfield(L, -2, "print");
	lua_rawgeti(L, LUA_REGISTRYINDEX, ex->srv->page_tables_ref);
	if (lua_getfield(L, -1, path) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, path);
	}
	lua_setfield(L, -3, "page");
	lua_pop(L, 1);
	lua_pushglobaltable(L);
	lua_setfield(L, -2, "app");
	lua_createtable(L, 0, 1);
	lua_pushglobaltable(L);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
	lua_call(L, 3, 0);
}

/* ---- access control ----------------------------------------------------------------- */

/* Whether the request may go on; sets ex->user. Raises on hook errors. */
static bool authorized(lua_State *L, struct cs_http_exchange *ex, int rq)
{
	struct cs_http_server *srv = ex->srv;
	bool guarded = false;
	size_t plen = strlen(ex->path);
	for (unsigned i = 0; i < srv->nprotect && !guarded; i++) {
		const char *pre = srv->protect[i];
		size_t n = strlen(pre);
		/* "/private/" also guards "/private", which serves its index */
		guarded = !strncmp(ex->path, pre, n) ||
			  (n > 1 && pre[n - 1] == '/' && plen == n - 1 && !strncmp(ex->path, pre, n - 1));
	}
	if (!guarded)
		return true;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, srv->auth_ref);
	int auth = lua_gettop(L);
	if (lua_getfield(L, auth, "session") == LUA_TFUNCTION) {
		lua_pushvalue(L, rq);
		lua_call(L, 1, 1);
		if (lua_isstring(L, -1)) {
			ex->user = strdup(lua_tostring(L, -1));
			lua_settop(L, top);
			return true;
		}
	}
	lua_settop(L, auth);
	const struct cs_http_header *h =
		cs_http_find_header(ex->req.headers, ex->req.num_headers, "Authorization");
	bool ok = false;
	if (h && h->value_len > 6 && !strncasecmp(h->value, "Basic ", 6)) {
		lua_getglobal(L, "ba");
		lua_getfield(L, -1, "b64decode");
		lua_pushlstring(L, h->value + 6, h->value_len - 6);
		lua_call(L, 1, 1);
		const char *cred = lua_tostring(L, -1);
		const char *colon = cred ? strchr(cred, ':') : NULL;
		if (colon) {
			lua_pushlstring(L, cred, (size_t)(colon - cred));
			lua_pushstring(L, colon + 1);
			int user = lua_gettop(L) - 1, pass = user + 1;
			if (lua_getfield(L, auth, "users") == LUA_TTABLE) {
				lua_pushvalue(L, user);
				lua_rawget(L, -2);
				ok = lua_isstring(L, -1) && lua_compare(L, -1, pass, LUA_OPEQ);
			}
			if (!ok && lua_getfield(L, auth, "check") == LUA_TFUNCTION) {
				lua_pushvalue(L, user);
				lua_pushvalue(L, pass);
				lua_call(L, 2, 1);
				ok = lua_toboolean(L, -1);
			}
			if (ok)
				ex->user = strdup(lua_tostring(L, user));
		}
	}
	lua_settop(L, top);
	if (!ok) {
		char hdr[200];
		snprintf(hdr, sizeof(hdr), "Basic realm=\"%s\"", srv->realm ? srv->realm : "cosockd");
		cs__http_error_page(ex, 401, "Authentication required.");
		add_header(ex, "WWW-Authenticate", hdr);
	}
	return ok;
}

/* ---- routing ------------------------------------------------------------------------- */

static bool has_dotdot(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")); s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == 0 || s[2] == '/'))
			return true;
	return false;
}

/* Find and run the handler. */
static void route(lua_State *L, struct cs_http_exchange *ex, int rq, int rs)
{
	struct cs_http_server *srv = ex->srv;
	lua_rawgeti(L, LUA_REGISTRYINDEX, srv->pages_ref);
	if (lua_getfield(L, -1, ex->path) == LUA_TFUNCTION) {
		lua_pushvalue(L, rq);
		lua_pushvalue(L, rs);
		lua_call(L, 2, 0);
		lua_pop(L, 1);
		return;
	}
	lua_pop(L, 2);
	if (!srv->root) {
		cs__http_error_page(ex, 404, "Not found.");
		return;
	}
	if (has_dotdot(ex->path) || strlen(ex->path) > 4000) {
		cs__http_error_page(ex, 403, "Forbidden.");
		return;
	}
	char file[4200];
	snprintf(file, sizeof(file), "%s%s", srv->root, ex->path);
	struct stat st;
	if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
		size_t base = strlen(file);
		bool found = false;
		for (unsigned i = 0; i < srv->nindex && !found; i++) {
			snprintf(file + base, sizeof(file) - base, "%s%s", file[base - 1] == '/' ? "" : "/",
				 srv->index[i]);
			found = stat(file, &st) == 0 && S_ISREG(st.st_mode);
		}
		if (!found) {
			cs__http_error_page(ex, 404, "Not found.");
			return;
		}
	}
	char *real = realpath(file, NULL);
	size_t rl = strlen(srv->root);
	if (!real || strncmp(real, srv->root, rl) || (real[rl] != '/' && real[rl] != 0)) {
		free(real);
		cs__http_error_page(ex, real ? 403 : 404, real ? "Forbidden." : "Not found.");
		return;
	}
	free(real);
	size_t fl = strlen(file);
	if (fl > 4 && !strcmp(file + fl - 4, ".lsp")) {
		push_lsp(L, srv, file, &st);
		call_lsp(L, ex, rq, rs, file); /* one `page` table per file */
		return;
	}
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		cs__http_error_page(ex, 404, "Not found.");
		return;
	}
	serve_file(L, rs, ex, fd, file, &st);
}

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
	return 1;
}

static void push_object(lua_State *L, int exidx, const char *mt)
{
	lua_newuserdatauv(L, 1, 1);
	lua_pushvalue(L, exidx);
	lua_setiuservalue(L, -2, 1);
	luaL_setmetatable(L, mt);
}

/* Collapse "//" and "/./" in place, so that access rules, caches and
 * routes see one spelling of each path ("..", kept, is refused later). */
static void normalize_path(char *p)
{
	char *o = p;
	for (const char *i = p; *i;) {
		if (i[0] == '/' && (i[1] == '/' || (i[1] == '.' && (i[2] == '/' || i[2] == 0)))) {
			i += i[1] == '/' ? 1 : 2;
			continue;
		}
		*o++ = *i++;
	}
	if (o == p)
		*o++ = '/';
	*o = 0;
}

/* Split the target into the decoded path and the query. false: bad. */
static bool split_target(struct cs_http_exchange *ex)
{
	const char *t = ex->req.target;
	size_t n = ex->req.target_len;
	const char *q = memchr(t, '?', n);
	size_t plen = q ? (size_t)(q - t) : n;
	if (q) {
		ex->query = q + 1;
		ex->query_len = n - plen - 1;
	}
	if (plen == 0 || t[0] != '/')
		return false;
	ex->path = malloc(plen + 1);
	if (!ex->path)
		return false;
	size_t d = cs_http_unescape(ex->path, t, plen, false);
	ex->path[d] = 0;
	if (strlen(ex->path) != d)
		return false; /* a NUL smuggled in */
	normalize_path(ex->path);
	return true;
}

/* Protected part of a request: (ex, request, response). */
static int run_handler(lua_State *L)
{
	struct cs_http_exchange *ex = lua_touserdata(L, 1);
	if (authorized(L, ex, 2))
		route(L, ex, 2, 3);
	return 0;
}

int cs__http_run(lua_State *L)
{
	int exidx = lua_upvalueindex(1);
	struct cs_http_exchange *ex = lua_touserdata(L, exidx);
	lua_settop(L, 0);
	push_object(L, exidx, REQUEST_MT);  /* 1 */
	push_object(L, exidx, RESPONSE_MT); /* 2 */
	if (!split_target(ex)) {
		cs__http_error_page(ex, 400, "Bad request target.");
	} else {
		lua_pushcfunction(L, traceback);
		lua_pushcfunction(L, run_handler);
		lua_pushlightuserdata(L, ex);
		lua_pushvalue(L, 1);
		lua_pushvalue(L, 2);
		if (lua_pcall(L, 3, 0, 3) != LUA_OK) {
			cs__log(ex->srv->vm, CS_LOG_ERR, "http: %.*s %s: %s", (int)ex->req.method_len,
				ex->req.method, ex->path, lua_tostring(L, -1));
			if (!ex->committed) {
				cs__http_error_page(ex, 500, "The page failed; the server log says why.");
			} else {
				ex->keep_alive = false; /* the response is cut short */
				ex->aborted = true;
			}
		}
	}
	lua_settop(L, 2);
	ex->finished = true;
	lua_pushvalue(L, exidx);
	call_on_loop(L, cs__http_finish);
	return 0;
}

static void new_type(lua_State *L, const char *mt, const luaL_Reg *methods)
{
	luaL_newmetatable(L, mt);
	lua_newtable(L);
	luaL_setfuncs(L, methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}

void cs__http_page_types(lua_State *L)
{
	static const luaL_Reg request[] = {
		{"method", rq_method},	  {"uri", rq_uri},	   {"url", rq_url},
		{"version", rq_version},  {"header", rq_header},   {"data", rq_data},
		{"rawrdbuf", rq_rawrdbuf}, {"cookie", rq_cookie},   {"peername", rq_peername},
		{"user", rq_user},	  {NULL, NULL},
	};
	static const luaL_Reg response[] = {
		{"setstatus", rs_setstatus},	   {"setheader", rs_setheader},
		{"setcontenttype", rs_setcontenttype}, {"write", rs_write},
		{"flush", rs_flush},		   {"senderror", rs_senderror},
		{"sendredirect", rs_sendredirect},   {"committed", rs_committed},
		{NULL, NULL},
	};
	new_type(L, REQUEST_MT, request);
	new_type(L, RESPONSE_MT, response);
}
