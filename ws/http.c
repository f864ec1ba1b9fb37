/*
 * http.c - HTTP/1.1 message syntax (RFC 9112): request and response heads,
 * what they say about framing, the chunked transfer coding, URLs and
 * query/form strings.
 *
 * The head parsers look only at complete lines, plus the length of the
 * line still arriving, so every prefix of a valid head is "incomplete"
 * while the limits still refuse a head that grows past them before it
 * ends. They are strict where leniency lets two parsers disagree about
 * where a message ends (request smuggling): no obs-fold, no blank before
 * the colon, one Content-Length value, nothing but chunked as a transfer
 * coding and never both framings at once.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "http.h"

#define DEFAULT_MAX_LINE 8192
#define DEFAULT_MAX_HEAD 65536
#define DEFAULT_MAX_HEADERS 100
#define CHUNK_LINE_MAX 4096
#define CHUNK_SIZE_MAX (UINT64_C(1) << 62)

int cs_http_error_status(int err)
{
	switch (err) {
	case CS_HTTP_E_LINE_TOO_LONG:
		return 414;
	case CS_HTTP_E_HEAD_TOO_LARGE:
	case CS_HTTP_E_TOO_MANY_HEADERS:
		return 431;
	case CS_HTTP_E_VERSION:
		return 505;
	case CS_HTTP_E_NOT_IMPLEMENTED:
		return 501;
	default:
		return 400;
	}
}

/* ---- character classes ------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* VCHAR or obs-text: what a field value or reason may hold besides blanks. */
static bool is_vchar(unsigned char c)
{
	return (c > 0x20 && c < 0x7f) || c >= 0x80;
}

static bool is_blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool eq_nocase(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/* ---- token lists --------------------------------------------------------- */

const struct cs_http_header *cs_http_find_header(const struct cs_http_header *h, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (eq_nocase(h[i].name, h[i].name_len, name))
			return &h[i];
	return NULL;
}

/* The next comma-separated element of s[*pos..len), blanks trimmed; false
 * when none is left. Empty elements are skipped. */
static bool next_element(const char *s, size_t len, size_t *pos, const char **el, size_t *el_len)
{
	while (*pos < len) {
		size_t start = *pos, end;
		const char *comma = memchr(s + start, ',', len - start);

		end = comma ? (size_t)(comma - s) : len;
		*pos = comma ? end + 1 : len;
		while (start < end && is_blank(s[start]))
			start++;
		while (end > start && is_blank(s[end - 1]))
			end--;
		if (end > start) {
			*el = s + start;
			*el_len = end - start;
			return true;
		}
	}
	return false;
}

bool cs_http_has_token(const char *value, size_t len, const char *token)
{
	size_t pos = 0, el_len;
	const char *el;

	while (next_element(value, len, &pos, &el, &el_len))
		if (eq_nocase(el, el_len, token))
			return true;
	return false;
}

/* ---- heads --------------------------------------------------------------- */

struct head_limits {
	size_t max_line, max_head;
	unsigned max_headers;
};

static void resolve_limits(const struct cs_http_limits *lim, struct head_limits *l)
{
	l->max_line = lim && lim->max_line ? lim->max_line : DEFAULT_MAX_LINE;
	l->max_head = lim && lim->max_head ? lim->max_head : DEFAULT_MAX_HEAD;
	l->max_headers = lim && lim->max_headers ? lim->max_headers : DEFAULT_MAX_HEADERS;
	if (l->max_headers > CS_HTTP_MAX_HEADERS)
		l->max_headers = CS_HTTP_MAX_HEADERS;
	/* The head's size is returned as an int. */
	if (l->max_head > INT_MAX)
		l->max_head = INT_MAX;
}

/* A line of the head: its content without the line end. */
struct line {
	const char *p;
	size_t len;
};

/* "HTTP/1.x": the minor version, CS_HTTP_E_VERSION for another well-formed
 * version, CS_HTTP_E_MALFORMED for anything else. */
static int parse_version(const char *p, size_t len)
{
	if (len != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.')
		return CS_HTTP_E_MALFORMED;
	if (p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
		return CS_HTTP_E_MALFORMED;
	if (p[5] != '1' || p[7] > '1')
		return CS_HTTP_E_VERSION;
	return p[7] - '0';
}

static int parse_request_line(const struct line *ln, struct cs_http_request *req)
{
	const char *p = ln->p, *end = ln->p + ln->len, *sp;
	size_t i;

	sp = memchr(p, ' ', ln->len);
	if (!sp || sp == p)
		return CS_HTTP_E_MALFORMED;
	for (i = 0; p + i < sp; i++)
		if (!is_tchar((unsigned char)p[i]))
			return CS_HTTP_E_MALFORMED;
	req->method = p;
	req->method_len = (size_t)(sp - p);

	p = sp + 1;
	sp = memchr(p, ' ', (size_t)(end - p));
	if (!sp || sp == p)
		return CS_HTTP_E_MALFORMED;
	for (i = 0; p + i < sp; i++)
		if (!is_vchar((unsigned char)p[i]))
			return CS_HTTP_E_MALFORMED;
	req->target = p;
	req->target_len = (size_t)(sp - p);

	p = sp + 1;
	int minor = parse_version(p, (size_t)(end - p));
	if (minor < 0)
		return minor;
	req->minor_version = minor;
	return 0;
}

static int parse_status_line(const struct line *ln, struct cs_http_response *resp)
{
	const char *p = ln->p;
	size_t len = ln->len, i;
	int minor;

	if (len < 12 || p[8] != ' ')
		return CS_HTTP_E_MALFORMED;
	minor = parse_version(p, 8);
	if (minor < 0)
		return minor;
	if (p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
		return CS_HTTP_E_MALFORMED;
	resp->minor_version = minor;
	resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	resp->reason = p + len;
	resp->reason_len = 0;
	if (len == 12)
		return 0;
	if (p[12] != ' ')
		return CS_HTTP_E_MALFORMED;
	for (i = 13; i < len; i++)
		if (!is_vchar((unsigned char)p[i]) && !is_blank((unsigned char)p[i]))
			return CS_HTTP_E_MALFORMED;
	resp->reason = p + 13;
	resp->reason_len = len - 13;
	return 0;
}

static int parse_header_line(const struct line *ln, struct cs_http_header *h)
{
	const char *p = ln->p;
	size_t len = ln->len, i = 0, vstart, vend;

	while (i < len && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == len || p[i] != ':')
		return CS_HTTP_E_MALFORMED;
	h->name = p;
	h->name_len = i;
	for (size_t j = i + 1; j < len; j++)
		if (!is_vchar((unsigned char)p[j]) && !is_blank((unsigned char)p[j]))
			return CS_HTTP_E_MALFORMED;
	vstart = i + 1;
	vend = len;
	while (vstart < vend && is_blank((unsigned char)p[vstart]))
		vstart++;
	while (vend > vstart && is_blank((unsigned char)p[vend - 1]))
		vend--;
	h->value = p + vstart;
	h->value_len = vend - vstart;
	return 0;
}

/* Content-Length: one decimal number, equal to any earlier one. */
static int parse_content_length(const struct cs_http_header *h, int64_t *cl)
{
	int64_t v = 0;

	if (h->value_len == 0)
		return CS_HTTP_E_FRAMING;
	for (size_t i = 0; i < h->value_len; i++) {
		unsigned char c = (unsigned char)h->value[i];

		if (c < '0' || c > '9')
			return CS_HTTP_E_FRAMING;
		if (v > (INT64_MAX - (c - '0')) / 10)
			return CS_HTTP_E_FRAMING;
		v = v * 10 + (c - '0');
	}
	if (*cl >= 0 && *cl != v)
		return CS_HTTP_E_FRAMING;
	*cl = v;
	return 0;
}

/* The framing and connection facts of a parsed head. A Transfer-Encoding
 * must be exactly one "chunked" over all its fields; any other coding is
 * not implemented; it may not meet a Content-Length nor HTTP/1.0. */
static int read_framing(const struct cs_http_header *h, unsigned n, int minor, bool request,
			struct cs_http_framing *f)
{
	bool has_te = false, conn_close = false, conn_keep = false, other_coding = false;
	unsigned chunked = 0;
	int err;

	memset(f, 0, sizeof(*f));
	f->content_length = -1;
	for (unsigned i = 0; i < n; i++) {
		const char *el;
		size_t el_len, pos = 0;

		if (eq_nocase(h[i].name, h[i].name_len, "content-length")) {
			err = parse_content_length(&h[i], &f->content_length);
			if (err)
				return err;
		} else if (eq_nocase(h[i].name, h[i].name_len, "transfer-encoding")) {
			has_te = true;
			while (next_element(h[i].value, h[i].value_len, &pos, &el, &el_len)) {
				if (eq_nocase(el, el_len, "chunked"))
					chunked++;
				else
					other_coding = true;
			}
		} else if (eq_nocase(h[i].name, h[i].name_len, "connection")) {
			while (next_element(h[i].value, h[i].value_len, &pos, &el, &el_len)) {
				if (eq_nocase(el, el_len, "close"))
					conn_close = true;
				else if (eq_nocase(el, el_len, "keep-alive"))
					conn_keep = true;
				else if (eq_nocase(el, el_len, "upgrade"))
					f->upgrade = true;
			}
		} else if (request && eq_nocase(h[i].name, h[i].name_len, "expect")) {
			if (eq_nocase(h[i].value, h[i].value_len, "100-continue"))
				f->expect_continue = true;
		}
	}
	if (has_te) {
		if (f->content_length >= 0 || minor == 0)
			return CS_HTTP_E_FRAMING;
		if (other_coding)
			return CS_HTTP_E_NOT_IMPLEMENTED;
		if (chunked != 1)
			return CS_HTTP_E_FRAMING;
		f->chunked = true;
	}
	f->keep_alive = minor == 1 ? !conn_close : (conn_keep && !conn_close);
	return 0;
}

/* The header lines of a head, and where the head ends. */
struct head {
	struct cs_http_header *headers;
	unsigned num_headers;
	size_t end;
};

/*
 * Walk buf[0..len) line by line: leading empty lines, the start line
 * (handed to start_line()), header lines, the blank line. Each line, even
 * one still arriving, is first held to the limits (the header count, the
 * start line's length, the head's size), a complete one then to the
 * syntax. So errors come in the order of the bytes that cause them, and
 * once a prefix of the input is refused, every longer one is refused the
 * same way.
 */
static int parse_head(const char *buf, size_t len, const struct head_limits *l,
		      int (*start_line)(const struct line *, void *), void *arg, struct head *hd)
{
	size_t pos = 0;
	bool started = false;
	int r;

	hd->num_headers = 0;
	if (len == 0)
		return CS_HTTP_PARTIAL;
	for (;;) {
		const char *start = buf + pos;
		const char *lf = memchr(start, '\n', len - pos);
		size_t n = lf ? (size_t)(lf - start) : len - pos;
		struct line ln = {start, n};

		/* Without its line end; a CR still alone may become one. */
		if (n && start[n - 1] == '\r')
			ln.len--;

		/* Of the limits this line breaks, the one broken at the
		 * earliest input length wins, so the answer does not change
		 * as the input grows. */
		size_t at = SIZE_MAX;
		int err = 0;

		if (started && ln.len && hd->num_headers >= l->max_headers) {
			at = pos + (start[0] == '\r' ? 2 : 1);
			err = CS_HTTP_E_TOO_MANY_HEADERS;
		}
		if (!started && ln.len > l->max_line) {
			/* A CR right after max_line bytes was still a possible line end. */
			size_t t = pos + l->max_line + 1 + (start[l->max_line] == '\r');

			if (t < at) {
				at = t;
				err = CS_HTTP_E_LINE_TOO_LONG;
			}
		}
		if ((lf ? pos + n + 1 > l->max_head : len >= l->max_head) && l->max_head < at)
			err = CS_HTTP_E_HEAD_TOO_LARGE;
		if (err)
			return err;
		if (!lf)
			return CS_HTTP_PARTIAL;
		pos += n + 1;

		if (ln.len == 0) {
			if (started)
				break;
			continue; /* an empty line before the start line */
		}
		if (memchr(ln.p, '\r', ln.len))
			return CS_HTTP_E_MALFORMED;
		if (!started) {
			r = start_line(&ln, arg);
			if (r < 0)
				return r;
			started = true;
			continue;
		}
		/* obs-fold, or a blank line start before any header. */
		if (is_blank((unsigned char)ln.p[0]))
			return CS_HTTP_E_MALFORMED;
		r = parse_header_line(&ln, &hd->headers[hd->num_headers]);
		if (r < 0)
			return r;
		hd->num_headers++;
	}
	hd->end = pos;
	return 0;
}

static int request_line_cb(const struct line *ln, void *arg)
{
	return parse_request_line(ln, arg);
}

static int status_line_cb(const struct line *ln, void *arg)
{
	return parse_status_line(ln, arg);
}

int cs_http_parse_request(const char *buf, size_t len, const struct cs_http_limits *lim,
			  struct cs_http_request *req)
{
	struct head_limits l;
	struct head hd = {.headers = req->headers};
	int r;

	resolve_limits(lim, &l);
	r = parse_head(buf, len, &l, request_line_cb, req, &hd);
	if (r < 0)
		return r;
	req->num_headers = hd.num_headers;
	r = read_framing(req->headers, req->num_headers, req->minor_version, true, &req->framing);
	if (r < 0)
		return r;
	return (int)hd.end;
}

int cs_http_parse_response(const char *buf, size_t len, const struct cs_http_limits *lim,
			   struct cs_http_response *resp)
{
	struct head_limits l;
	struct head hd = {.headers = resp->headers};
	int r;

	resolve_limits(lim, &l);
	r = parse_head(buf, len, &l, status_line_cb, resp, &hd);
	if (r < 0)
		return r;
	resp->num_headers = hd.num_headers;
	r = read_framing(resp->headers, resp->num_headers, resp->minor_version, false, &resp->framing);
	if (r < 0)
		return r;
	return (int)hd.end;
}

/* ---- chunked transfer coding -------------------------------------------- */

enum chunk_state {
	CH_SIZE,     /* hex digits of the size */
	CH_SIZE_BWS, /* blanks after the digits */
	CH_EXT,	     /* a chunk extension, skipped */
	CH_SIZE_LF,  /* CR seen, LF due */
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER, /* in a trailer line (or at the start of one) */
	CH_TRAILER_LF,
	CH_DONE,
	CH_FAILED_MALFORMED,
	CH_FAILED_FRAMING,
};

void cs_http_chunked_init(struct cs_http_chunked *d, uint64_t max_body)
{
	memset(d, 0, sizeof(*d));
	d->max_body = max_body;
	d->state = CH_SIZE;
}

static ssize_t chunk_fail(struct cs_http_chunked *d, int err)
{
	d->state = err == CS_HTTP_E_FRAMING ? CH_FAILED_FRAMING : CH_FAILED_MALFORMED;
	return err;
}

/* The size line is complete: start the chunk, or the trailers after the last. */
static ssize_t chunk_size_done(struct cs_http_chunked *d)
{
	d->line_len = 0;
	d->hex_digits = 0;
	if (d->remaining == 0) {
		d->state = CH_TRAILER;
		return 0;
	}
	if (d->max_body && (d->remaining > d->max_body || d->total > d->max_body - d->remaining))
		return chunk_fail(d, CS_HTTP_E_FRAMING);
	d->state = CH_DATA;
	return 0;
}

ssize_t cs_http_decode_chunked(struct cs_http_chunked *d, char *buf, size_t *len)
{
	size_t r = 0, w = 0, n = *len;

	if (d->state == CH_FAILED_MALFORMED) {
		*len = 0;
		return CS_HTTP_E_MALFORMED;
	}
	if (d->state == CH_FAILED_FRAMING) {
		*len = 0;
		return CS_HTTP_E_FRAMING;
	}
	while (r < n && d->state != CH_DONE) {
		unsigned char c = (unsigned char)buf[r];
		int hv;

		if (d->state == CH_DATA) {
			size_t take = n - r;

			if (take > d->remaining)
				take = (size_t)d->remaining;
			memmove(buf + w, buf + r, take);
			w += take;
			r += take;
			d->remaining -= take;
			d->total += take;
			if (d->remaining == 0)
				d->state = CH_DATA_CR;
			continue;
		}
		r++;
		if (d->state != CH_DATA_CR && d->state != CH_DATA_LF && ++d->line_len > CHUNK_LINE_MAX) {
			*len = 0;
			return chunk_fail(d, CS_HTTP_E_MALFORMED);
		}
		switch (d->state) {
		case CH_SIZE:
			hv = hex_value(c);
			if (hv >= 0) {
				if (d->remaining > (CHUNK_SIZE_MAX >> 4) ||
				    (d->remaining << 4) + (uint64_t)hv > CHUNK_SIZE_MAX) {
					*len = 0;
					return chunk_fail(d, CS_HTTP_E_MALFORMED);
				}
				d->remaining = (d->remaining << 4) | (uint64_t)hv;
				if (d->hex_digits < UINT8_MAX)
					d->hex_digits++;
				break;
			}
			if (d->hex_digits == 0) {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			/* fall through - the first byte after the digits */
		case CH_SIZE_BWS:
			if (is_blank(c)) {
				d->state = CH_SIZE_BWS;
			} else if (c == ';') {
				d->state = CH_EXT;
			} else if (c == '\r') {
				d->state = CH_SIZE_LF;
			} else {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			break;
		case CH_EXT:
			if (c == '\r')
				d->state = CH_SIZE_LF;
			else if (!is_vchar(c) && !is_blank(c)) {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			break;
		case CH_SIZE_LF:
			if (c != '\n') {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			if (chunk_size_done(d) < 0) {
				*len = 0;
				return CS_HTTP_E_FRAMING;
			}
			break;
		case CH_DATA_CR:
			if (c != '\r') {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			d->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (c != '\n') {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			d->state = CH_SIZE;
			d->line_len = 0;
			break;
		case CH_TRAILER:
			if (c == '\r') {
				d->state = CH_TRAILER_LF;
			} else if (!is_vchar(c) && !is_blank(c)) {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			break;
		case CH_TRAILER_LF:
			if (c != '\n') {
				*len = 0;
				return chunk_fail(d, CS_HTTP_E_MALFORMED);
			}
			/* line_len counts the CR and LF: 2 means the empty line. */
			if (d->line_len == 2)
				d->state = CH_DONE;
			else
				d->state = CH_TRAILER;
			d->line_len = 0;
			break;
		default:
			break;
		}
	}
	*len = w;
	if (d->state != CH_DONE)
		return CS_HTTP_PARTIAL;
	if (n > r)
		memmove(buf + w, buf + r, n - r);
	return (ssize_t)(n - r);
}

/* ---- URLs ---------------------------------------------------------------- */

static bool is_host_char(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("-._~%!$&'()*+,;=", c) != NULL;
}

static bool is_ip6_char(unsigned char c)
{
	return hex_value(c) >= 0 || c == ':' || c == '.';
}

int cs_url_parse(const char *url, size_t len, struct cs_url *u)
{
	const char *p, *end = url + len, *auth_end, *at, *host_end;
	size_t i;

	memset(u, 0, sizeof(*u));
	if (len == 0)
		return -1;
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
			return -1;

	p = memchr(url, ':', len);
	if (!p || end - p < 3 || p[1] != '/' || p[2] != '/')
		return -1;
	u->scheme = url;
	u->scheme_len = (size_t)(p - url);
	if (eq_nocase(url, u->scheme_len, "http")) {
		u->port = 80;
	} else if (eq_nocase(url, u->scheme_len, "https")) {
		u->port = 443;
		u->tls = true;
	} else if (eq_nocase(url, u->scheme_len, "ws")) {
		u->port = 80;
		u->websocket = true;
	} else if (eq_nocase(url, u->scheme_len, "wss")) {
		u->port = 443;
		u->tls = true;
		u->websocket = true;
	} else {
		return -1;
	}
	p += 3;

	for (auth_end = p; auth_end < end; auth_end++)
		if (*auth_end == '/' || *auth_end == '?' || *auth_end == '#')
			break;

	at = NULL;
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));

		u->user = p;
		u->user_len = (size_t)((colon ? colon : at) - p);
		if (colon) {
			u->password = colon + 1;
			u->password_len = (size_t)(at - colon - 1);
		}
		p = at + 1;
	}

	if (p < auth_end && *p == '[') {
		const char *rb = memchr(p, ']', (size_t)(auth_end - p));
		bool colon = false;

		if (!rb || rb == p + 1)
			return -1;
		for (const char *q = p + 1; q < rb; q++) {
			if (!is_ip6_char((unsigned char)*q))
				return -1;
			colon |= *q == ':';
		}
		if (!colon)
			return -1;
		u->host = p + 1;
		u->host_len = (size_t)(rb - p - 1);
		host_end = rb + 1;
		if (host_end < auth_end && *host_end != ':')
			return -1;
	} else {
		host_end = p;
		while (host_end < auth_end && *host_end != ':') {
			if (!is_host_char((unsigned char)*host_end))
				return -1;
			host_end++;
		}
		if (host_end == p)
			return -1;
		u->host = p;
		u->host_len = (size_t)(host_end - p);
	}

	if (host_end < auth_end) {
		long port = 0;
		const char *q = host_end + 1;

		if (q == auth_end)
			return -1;
		for (; q < auth_end; q++) {
			if (*q < '0' || *q > '9')
				return -1;
			port = port * 10 + (*q - '0');
			if (port > 65535)
				return -1;
		}
		if (port == 0)
			return -1;
		u->port = (int)port;
	}

	/* The fragment is never sent. */
	const char *hash = memchr(auth_end, '#', (size_t)(end - auth_end));
	const char *pq_end = hash ? hash : end;

	if (auth_end == pq_end) {
		u->path_and_query = "/";
		u->path_and_query_len = 1;
	} else {
		u->path_and_query = auth_end;
		u->path_and_query_len = (size_t)(pq_end - auth_end);
	}
	return 0;
}

/* ---- form and query strings -------------------------------------------- */

size_t cs_http_unescape(char *dst, const char *src, size_t len, bool plus_is_space)
{
	size_t r = 0, w = 0;

	while (r < len) {
		char c = src[r];

		if (c == '%' && r + 2 < len && hex_value((unsigned char)src[r + 1]) >= 0 &&
		    hex_value((unsigned char)src[r + 2]) >= 0) {
			dst[w++] = (char)(hex_value((unsigned char)src[r + 1]) << 4 |
					  hex_value((unsigned char)src[r + 2]));
			r += 3;
		} else {
			dst[w++] = plus_is_space && c == '+' ? ' ' : c;
			r++;
		}
	}
	return w;
}

bool cs_http_next_param(const char *s, size_t len, size_t *pos, const char **name, size_t *name_len,
			const char **value, size_t *value_len)
{
	while (*pos < len) {
		size_t start = *pos, end = start, eq;

		while (end < len && s[end] != '&' && s[end] != ';')
			end++;
		*pos = end < len ? end + 1 : len;
		if (end == start)
			continue;
		for (eq = start; eq < end && s[eq] != '='; eq++)
			;
		*name = s + start;
		*name_len = eq - start;
		if (eq < end) {
			*value = s + eq + 1;
			*value_len = end - eq - 1;
		} else {
			*value = s + end;
			*value_len = 0;
		}
		return true;
	}
	return false;
}
