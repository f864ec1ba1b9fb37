/*
 * http.h - HTTP/1.1 message parsing: request and response heads, the
 * chunked transfer coding, URLs and form/query strings.
 *
 * Zero-copy: every parsed name and value points into the caller's buffer,
 * which must outlive the result. Nothing here allocates, does I/O or knows
 * of Lua. Every parser is restartable: feed it the whole buffer again when
 * more bytes arrived (heads are small and bounded, so re-parsing a partial
 * head costs little), except the chunked decoder, which keeps state.
 *
 * Return contract of the head parsers, as picohttpparser's:
 *   > 0  the head is complete and that many bytes of buf belong to it
 *        (request/status line, header lines, the blank line);
 *   -2   incomplete: nothing wrong so far, read more and call again;
 *   any other negative value: a CS_HTTP_E_* error (the head is refused).
 */
#ifndef CS_WS_HTTP_H
#define CS_WS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CS_HTTP_PARTIAL (-2)

enum cs_http_error {
	CS_HTTP_E_MALFORMED = -1,   /* 400: syntax */
	CS_HTTP_E_LINE_TOO_LONG = -3, /* 414: request line over max_line */
	CS_HTTP_E_HEAD_TOO_LARGE = -4, /* 431: head over max_head bytes */
	CS_HTTP_E_TOO_MANY_HEADERS = -5, /* 431: more than max_headers */
	CS_HTTP_E_VERSION = -6,     /* 505: not HTTP/1.0 or HTTP/1.1 */
	CS_HTTP_E_FRAMING = -7,     /* 400: bad or conflicting Content-Length /
				     * Transfer-Encoding (request smuggling) */
	CS_HTTP_E_NOT_IMPLEMENTED = -8, /* 501: a transfer coding other than chunked */
};

/* The status a server answers a CS_HTTP_E_* code with (400 for unknown). */
int cs_http_error_status(int err);

struct cs_http_header {
	const char *name;
	size_t name_len;
	const char *value; /* leading and trailing blanks removed */
	size_t value_len;
};

struct cs_http_limits {
	size_t max_line;      /* request or status line (without CRLF); 0: 8192 */
	size_t max_head;      /* whole head, blank line included; 0: 65536 */
	unsigned max_headers; /* header lines; 0: 100; at most CS_HTTP_MAX_HEADERS */
};
#define CS_HTTP_MAX_HEADERS 256

/* What a head says about the body that follows it. */
struct cs_http_framing {
	int64_t content_length; /* -1: none given */
	bool chunked;           /* Transfer-Encoding: chunked (last coding) */
	bool keep_alive;        /* the connection may carry another message:
				 * HTTP/1.1 unless "Connection: close",
				 * HTTP/1.0 only with "Connection: keep-alive" */
	bool upgrade;           /* "Connection: upgrade" token present */
	bool expect_continue;   /* request: "Expect: 100-continue" */
};

struct cs_http_request {
	const char *method;
	size_t method_len;
	const char *target;     /* request-target as sent: path[?query] */
	size_t target_len;
	int minor_version;      /* HTTP/1.x */
	struct cs_http_header headers[CS_HTTP_MAX_HEADERS];
	unsigned num_headers;
	struct cs_http_framing framing;
};

struct cs_http_response {
	int minor_version;
	int status;             /* 100..999 */
	const char *reason;
	size_t reason_len;
	struct cs_http_header headers[CS_HTTP_MAX_HEADERS];
	unsigned num_headers;
	struct cs_http_framing framing;
};

/* Parse a request head at buf[0..len). Leading empty lines (CRLF or LF) are
 * skipped, as RFC 9112 allows. Lines may end in CRLF or a bare LF. Obsolete
 * line folding, a header name with blanks or controls, a request line with
 * anything but single spaces, and a Content-Length that is not one decimal
 * number (repeated equal values are accepted) are refused, as is a
 * Transfer-Encoding in an HTTP/1.0 message (CS_HTTP_E_FRAMING). lim may be
 * NULL (defaults). Returns as described at the top of this file; req's
 * contents mean something only on success (it is written to all the
 * same). Once a prefix of some input is refused, every longer prefix is
 * refused with the same code. */
int cs_http_parse_request(const char *buf, size_t len, const struct cs_http_limits *lim,
			  struct cs_http_request *req);

/* Parse a response head. Same rules and contract; a status line without a
 * reason phrase is accepted. keep_alive in framing follows the response's
 * own version and Connection header. */
int cs_http_parse_response(const char *buf, size_t len, const struct cs_http_limits *lim,
			   struct cs_http_response *resp);

/* The first header named name (case-insensitive), or NULL. */
const struct cs_http_header *cs_http_find_header(const struct cs_http_header *h, unsigned n,
						 const char *name);

/* Whether a comma-separated header value holds token (case-insensitive,
 * blanks around commas ignored): "keep-alive, Upgrade" has "upgrade". */
bool cs_http_has_token(const char *value, size_t len, const char *token);

/*
 * The chunked transfer coding, decoded in place: each call takes only
 * bytes not given before (not the decoded output of earlier calls) and
 * moves the decoded body bytes among them to the front of buf. Chunk
 * extensions are skipped; trailer fields are read and dropped. Every line
 * of the coding must end in CRLF (a bare LF is refused: the leniency that
 * lets two parsers disagree on where a body ends).
 */
struct cs_http_chunked {
	uint64_t remaining;  /* bytes left in the current chunk */
	uint64_t total;      /* body bytes decoded so far */
	uint64_t max_body;   /* 0: no limit; else more is CS_HTTP_E_FRAMING */
	uint8_t state;       /* private */
	uint8_t hex_digits;  /* private */
	uint16_t line_len;   /* private: length of the size or trailer line */
};

void cs_http_chunked_init(struct cs_http_chunked *d, uint64_t max_body);

/* Decode buf[0..*len). On return *len is the number of decoded body bytes
 * now at buf[0..*len) (0 on an error). After an error every call reports
 * it again.
 *   >= 0  the body ended (last chunk and trailers read); the value is how
 *         many bytes after the body are left unparsed at the end of the
 *         original input, already moved to buf[*len..*len + value) — the
 *         start of the next message;
 *   -2    the body goes on: call again with more input (what was consumed
 *         is gone from buf; only decoded bytes remain, at the front);
 *   CS_HTTP_E_MALFORMED: a bad chunk size line, a missing CRLF after chunk
 *         data, a size over 2^62, a size/trailer line over 4 KiB or a
 *         control byte in an extension or trailer;
 *   CS_HTTP_E_FRAMING: the body is larger than max_body. */
ssize_t cs_http_decode_chunked(struct cs_http_chunked *d, char *buf, size_t *len);

/* A URL as httpc takes it: scheme://[user[:password]@]host[:port][/path][?query].
 * Schemes: http, https, ws, wss (case-insensitive); port defaults to 80 or
 * 443. host may be an IPv6 literal in brackets (the brackets are not part
 * of host). A fragment ("#...") is dropped. path_and_query is "/" (a
 * static string) when the URL has neither path nor query; a URL with a
 * query but no path ("http://h?q") gives "?q", and the request target is
 * then "/" followed by it. */
struct cs_url {
	const char *scheme;
	size_t scheme_len;
	const char *user;          /* NULL when absent */
	size_t user_len;
	const char *password;      /* NULL when absent */
	size_t password_len;
	const char *host;
	size_t host_len;
	int port;
	bool tls;                  /* https or wss */
	bool websocket;            /* ws or wss */
	const char *path_and_query;
	size_t path_and_query_len;
};

/* 0, or -1 for an unknown scheme, an empty host, a bad port (0 or over
 * 65535, empty, or not digits) or a control character or blank anywhere. */
int cs_url_parse(const char *url, size_t len, struct cs_url *u);

/* Percent-decode src[0..len) into dst (which may be src itself; it needs
 * len bytes at most). With plus_is_space (form and query data), '+' becomes
 * a space. A '%' not followed by two hex digits is kept as it is. Returns
 * the decoded length. */
size_t cs_http_unescape(char *dst, const char *src, size_t len, bool plus_is_space);

/* Walk name=value pairs of a query string or an
 * application/x-www-form-urlencoded body, separated by '&' (or ';').
 * Call with *pos = 0, then again while it returns true; each call gives
 * the next raw (still escaped) pair. A pair without '=' has an empty value.
 * Empty pairs ("a=1&&b=2") are skipped. */
bool cs_http_next_param(const char *s, size_t len, size_t *pos, const char **name,
			size_t *name_len, const char **value, size_t *value_len);

#endif
