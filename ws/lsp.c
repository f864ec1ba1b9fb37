/*
 * lsp.c - Lua Server Pages into Lua source: text becomes _emit("...")
 * calls, <?lsp code ?> is copied as it is, <?lsp= expr ?> and <?= expr ?>
 * become _emitv((expr)).
 *
 * Line numbers must stay the page's, so every newline of the page is a
 * newline of the chunk: in text it is written as a backslash and a real
 * newline inside the string literal, which Lua reads as "\n". Everything
 * else that could end or bend a literal (quote, backslash, CR, controls,
 * NUL) is escaped. Each generated call ends with ';' so a page's code that
 * starts with '(' cannot turn it into a call of its result, and code is
 * followed by ';' for the same reason between two tags.
 *
 * A line comment at the end of a code tag (<?lsp -- note ?>) would swallow
 * what follows on that line, so when the last line of a tag holds "--" a
 * newline is written after it, and the next newline of the page's text is
 * written as "\n" instead to give that line back. "--" inside a string is
 * treated the same way; that costs nothing but a line offset until the
 * next newline of text.
 *
 * Like the original product, "?>" ends a tag wherever it stands, inside a
 * Lua string or comment too: write "?".. ">" in code to get one.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

#define PROLOGUE "local _emit, _emitv = ...;"

struct out {
	char *p;
	size_t len, cap;
	bool oom;
	unsigned owed_newlines; /* newlines written ahead of the page's */
};

static void reserve(struct out *o, size_t n)
{
	size_t cap;
	char *p;

	if (o->oom || o->len + n < o->cap)
		return;
	cap = o->cap ? o->cap : 256;
	while (cap <= o->len + n) {
		if (cap > (size_t)-1 / 2) {
			o->oom = true;
			return;
		}
		cap *= 2;
	}
	p = realloc(o->p, cap);
	if (!p) {
		o->oom = true;
		return;
	}
	o->p = p;
	o->cap = cap;
}

static void put(struct out *o, const char *s, size_t n)
{
	reserve(o, n);
	if (o->oom)
		return;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* _emit("text"); with the page's newlines kept as lines of the chunk. */
static void emit_text(struct out *o, const char *s, size_t n)
{
	if (n == 0)
		return;
	puts_(o, "_emit(\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		switch (c) {
		case '\n':
			if (o->owed_newlines) {
				o->owed_newlines--;
				puts_(o, "\\n");
			} else {
				puts_(o, "\\\n");
			}
			break;
		case '\r':
			puts_(o, "\\r");
			break;
		case '\\':
			puts_(o, "\\\\");
			break;
		case '"':
			puts_(o, "\\\"");
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\%03u", c);
				puts_(o, esc);
			} else {
				put(o, (const char *)&c, 1);
			}
		}
	}
	puts_(o, "\");");
}

/* Whether the last line of s[0..n) may end inside a line comment. */
static bool may_end_in_comment(const char *s, size_t n)
{
	size_t start = n;

	while (start > 0 && s[start - 1] != '\n' && s[start - 1] != '\r')
		start--;
	for (size_t i = start; i + 1 < n; i++)
		if (s[i] == '-' && s[i + 1] == '-')
			return true;
	return false;
}

/* Code or an expression as written, closed so that what follows is safe. */
static void emit_code(struct out *o, const char *s, size_t n, bool expr)
{
	if (expr)
		puts_(o, "_emitv((");
	put(o, s, n);
	if (may_end_in_comment(s, n)) {
		puts_(o, "\n");
		o->owed_newlines++;
	}
	puts_(o, expr ? "));" : ";");
}

static size_t count_lines(const char *s, size_t n)
{
	size_t lines = 0;

	for (size_t i = 0; i < n; i++)
		lines += s[i] == '\n';
	return lines;
}

static const char *find(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0)
			return s + i;
	return NULL;
}

/* The next tag at or after s: its start and the length of its opener, and
 * whether it is an expression; NULL when no tag is left. */
static const char *next_tag(const char *s, size_t n, size_t *open_len, bool *expr)
{
	for (const char *p = s; (p = find(p, n - (size_t)(p - s), "<?")) != NULL; p += 2) {
		size_t left = n - (size_t)(p - s);

		if (left >= 6 && memcmp(p, "<?lsp=", 6) == 0) {
			*open_len = 6;
			*expr = true;
			return p;
		}
		if (left >= 5 && memcmp(p, "<?lsp", 5) == 0) {
			*open_len = 5;
			*expr = false;
			return p;
		}
		if (left >= 3 && memcmp(p, "<?=", 3) == 0) {
			*open_len = 3;
			*expr = true;
			return p;
		}
	}
	return NULL;
}

char *cs_lsp_translate(const char *src, size_t len, size_t *out_len, char *err, size_t errlen)
{
	struct out o = {0};
	size_t pos = 0;

	if (err && errlen)
		err[0] = '\0';
	puts_(&o, PROLOGUE);
	while (pos < len) {
		size_t open_len;
		bool expr;
		const char *tag = next_tag(src + pos, len - pos, &open_len, &expr);

		if (!tag) {
			emit_text(&o, src + pos, len - pos);
			break;
		}
		emit_text(&o, src + pos, (size_t)(tag - (src + pos)));

		const char *body = tag + open_len;
		const char *close = find(body, len - (size_t)(body - src), "?>");

		if (!close) {
			if (err && errlen)
				snprintf(err, errlen, "line %zu: %.*s without ?>",
					 count_lines(src, (size_t)(tag - src)) + 1, (int)open_len, tag);
			free(o.p);
			return NULL;
		}
		emit_code(&o, body, (size_t)(close - body), expr);
		pos = (size_t)(close + 2 - src);
	}
	reserve(&o, 1);
	if (o.oom) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		free(o.p);
		return NULL;
	}
	o.p[o.len] = '\0';
	if (out_len)
		*out_len = o.len;
	return o.p;
}
