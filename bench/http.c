/*
 * http.c - HTTP/1.1 scanning for the benchmark (see http.h).
 */
#include <string.h>
#include <strings.h>

#include "http.h"

size_t cs__http_head_end(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	while ((p = memchr(p, '\r', (size_t)(end - p))) && end - p >= 4) {
		if (!memcmp(p, "\r\n\r\n", 4))
			return (size_t)(p - buf) + 4;
		p++;
	}
	return 0;
}

static int blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

const char *cs__http_header(const char *head, size_t len, const char *name, size_t *vlen)
{
	const char *end = head + len;
	const char *line = memchr(head, '\n', len);
	size_t nlen = strlen(name);

	while (line && ++line < end) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
		    !strncasecmp(line, name, nlen)) {
			const char *v = line + nlen + 1, *ve = eol;
			while (v < ve && blank(*v))
				v++;
			while (ve > v && (blank(ve[-1]) || ve[-1] == '\r'))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		line = eol;
	}
	return NULL;
}

int cs__http_has_token(const char *v, size_t vlen, const char *token)
{
	size_t tlen = strlen(token);
	const char *end = v + vlen;

	while (v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *te = comma ? comma : end;
		while (v < te && blank(*v))
			v++;
		const char *ve = te;
		while (ve > v && blank(ve[-1]))
			ve--;
		if ((size_t)(ve - v) == tlen && !strncasecmp(v, token, tlen))
			return 1;
		v = te + 1;
	}
	return 0;
}

int cs__http_length(const char *v, size_t vlen, uint64_t *out)
{
	uint64_t n = 0;

	if (!vlen)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9' || n >= (1ull << 62) / 10)
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*out = n;
	return 0;
}

enum {
	CK_SIZE,       /* hex digits of a chunk size */
	CK_EXT,        /* ";extension" up to the CR */
	CK_SIZE_LF,    /* the LF ending the size line */
	CK_DATA,       /* left bytes of data */
	CK_DATA_CR,    /* the CRLF after the data */
	CK_DATA_LF,
	CK_TRAILER,    /* start of a trailer line, or the final CRLF */
	CK_TRAILER_LINE,
	CK_END_LF,
};

static int hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

ssize_t cs__chunked_feed(struct cs__chunked *ck, const char *p, size_t n, int *done)
{
	size_t i = 0;

	*done = 0;
	while (i < n) {
		char ch = p[i];
		switch (ck->state) {
		case CK_SIZE:
			if (hex(ch) >= 0) {
				if (++ck->digits > 15)
					return -1; /* absurd size */
				ck->left = ck->left * 16 + (uint64_t)hex(ch);
			} else if (ck->digits && (ch == ';' || ch == '\r')) {
				ck->state = ch == ';' ? CK_EXT : CK_SIZE_LF;
			} else {
				return -1;
			}
			break;
		case CK_EXT:
			if (ch == '\r')
				ck->state = CK_SIZE_LF;
			break;
		case CK_SIZE_LF:
			if (ch != '\n')
				return -1;
			ck->digits = 0;
			ck->state = ck->left ? CK_DATA : CK_TRAILER;
			break;
		case CK_DATA: {
			size_t k = n - i;
			if (k > ck->left)
				k = (size_t)ck->left;
			ck->left -= k;
			ck->data += k;
			i += k;
			if (!ck->left)
				ck->state = CK_DATA_CR;
			continue;
		}
		case CK_DATA_CR:
			if (ch != '\r')
				return -1;
			ck->state = CK_DATA_LF;
			break;
		case CK_DATA_LF:
			if (ch != '\n')
				return -1;
			ck->state = CK_SIZE;
			break;
		case CK_TRAILER:
			ck->state = ch == '\r' ? CK_END_LF : CK_TRAILER_LINE;
			break;
		case CK_TRAILER_LINE:
			if (ch == '\n')
				ck->state = CK_TRAILER;
			break;
		case CK_END_LF:
			if (ch != '\n')
				return -1;
			*done = 1;
			return (ssize_t)(i + 1);
		default:
			return -1;
		}
		i++;
	}
	return (ssize_t)i;
}
