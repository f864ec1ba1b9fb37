/*
 * fuzz_ws.c - libFuzzer target for ws/wsframe.c: the frame receiver in the
 * role and with the max_frame the input picks, fed in two pieces split at
 * an input-chosen point and again one byte at a time; the UTF-8 validator
 * against a plain reference decoder; header building and masking.
 *
 * Each piece is an exact-size heap copy so ASan catches a read past it.
 * Every event is checked against the ones before it (counters, flags,
 * data inside what the call consumed, nothing but ERROR inside a frame),
 * and the two feedings must describe the same stream: the same frames,
 * bytes and control events (when a UTF-8 error cut the stream, only that
 * both end in that error). A broken invariant aborts.
 *
 * Input: byte 0 picks the role and max_frame, byte 1 the split point; the
 * rest is the byte stream.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

#define CHECK(cond)                                                                         \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                            \
		}                                                                           \
	} while (0)

/* ---- a summary of one feeding ------------------------------------------------- */

#define MAX_EVENTS 4096

struct rec {
	uint8_t type;
	bool text, fin;
	uint64_t frame_len, message_done;
	size_t len;
	uint16_t code;
	uint32_t ctl_hash;
};

struct run {
	struct rec ev[MAX_EVENTS];
	size_t n;
	uint8_t *data;
	size_t data_len;
	bool overflow;
	/* stream state, for the checks */
	bool in_frame, in_message, text;
	uint64_t done;
};

static uint32_t hash(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void record(struct run *r, const struct cs_ws_event *ev)
{
	struct rec *last = r->n ? &r->ev[r->n - 1] : NULL;

	if (ev->type == CS_WS_EV_DATA) {
		CHECK(ev->len > 0 || ev->frame_len == 0);
		CHECK(ev->frame_start == !r->in_frame);
		CHECK(ev->frame_done <= ev->frame_len);
		CHECK(ev->frame_end == (ev->frame_done == ev->frame_len));
		if (ev->frame_start) {
			CHECK(ev->frame_done == ev->len);
			if (!r->in_message) {
				r->in_message = true;
				r->text = ev->text;
				r->done = 0;
			}
		} else {
			CHECK(last && last->type == CS_WS_EV_DATA);
			CHECK(ev->frame_done == last->len + ev->len);
			CHECK(ev->frame_len == last->frame_len && ev->fin == last->fin);
		}
		CHECK(ev->text == r->text);
		CHECK(ev->message_done == r->done + ev->len);
		r->done = ev->message_done;
		r->in_frame = !ev->frame_end;
		if (ev->fin && ev->frame_end)
			r->in_message = false;
		memcpy(r->data + r->data_len, ev->data, ev->len);
		r->data_len += ev->len;
		if (!ev->frame_start) {
			last->len += ev->len;
			last->message_done = ev->message_done;
			return;
		}
	} else {
		CHECK(!r->in_frame || ev->type == CS_WS_EV_ERROR);
		CHECK(ev->len <= CS_WS_MAX_CONTROL);
		if (ev->type == CS_WS_EV_ERROR)
			CHECK(ev->code == CS_WS_CLOSE_PROTOCOL || ev->code == CS_WS_CLOSE_BAD_DATA ||
			      ev->code == CS_WS_CLOSE_TOO_BIG);
		if (ev->type == CS_WS_EV_CLOSE)
			CHECK(ev->code == CS_WS_CLOSE_NO_STATUS ? ev->len == 0
			      : (ev->code >= 1000 && ev->code <= 4999));
	}
	if (r->n == MAX_EVENTS) {
		r->overflow = true;
		return;
	}
	struct rec *nr = &r->ev[r->n++];
	memset(nr, 0, sizeof(*nr));
	nr->type = ev->type;
	nr->text = ev->text;
	nr->fin = ev->fin;
	nr->frame_len = ev->frame_len;
	nr->message_done = ev->message_done;
	nr->len = ev->len;
	nr->code = ev->code;
	if (ev->type != CS_WS_EV_DATA && ev->len)
		nr->ctl_hash = hash(ev->data, ev->len);
}

/* Feed stream[0..len) in pieces of step bytes, each an exact-size copy. */
static void feed(struct run *r, bool server, uint64_t max_frame, const uint8_t *stream, size_t len,
		 size_t step)
{
	struct cs_ws_rx rx;
	size_t pos = 0;

	r->n = 0;
	r->data = malloc(len ? len : 1);
	r->data_len = 0;
	r->overflow = false;
	r->in_frame = r->in_message = r->text = false;
	r->done = 0;
	CHECK(r->data);
	cs_ws_rx_init(&rx, server, max_frame);
	while (pos < len) {
		size_t n = len - pos < step ? len - pos : step, sub = 0;
		uint8_t *piece = malloc(n);

		CHECK(piece);
		memcpy(piece, stream + pos, n);
		for (unsigned loops = 0;; loops++) {
			struct cs_ws_event ev;
			size_t c = cs_ws_rx_feed(&rx, piece + sub, n - sub, &ev);

			CHECK(loops <= n + 2);
			CHECK(c <= n - sub);
			CHECK(ev.type <= CS_WS_EV_ERROR);
			if (ev.type == CS_WS_EV_DATA)
				CHECK(ev.data >= piece + sub && ev.data + ev.len <= piece + sub + c);
			if (ev.type == CS_WS_EV_PING || ev.type == CS_WS_EV_PONG)
				CHECK(ev.len == 0 || ev.data != NULL);
			sub += c;
			if (ev.type == CS_WS_EV_NONE) {
				CHECK(sub == n);
				break;
			}
			record(r, &ev);
			if (ev.type == CS_WS_EV_ERROR || ev.type == CS_WS_EV_CLOSE) {
				struct cs_ws_event again;
				uint8_t more[2] = {0x81, 0x00};

				CHECK(cs_ws_rx_feed(&rx, more, sizeof(more), &again) == sizeof(more));
				CHECK(again.type == ev.type && again.code == ev.code && again.len == ev.len);
				free(piece);
				return;
			}
			if (sub == n)
				break;
		}
		free(piece);
		pos += n;
	}
}

static bool same(const struct run *a, const struct run *b)
{
	if (a->overflow || b->overflow)
		return true;
	if (a->n != b->n || a->data_len != b->data_len ||
	    (a->data_len && memcmp(a->data, b->data, a->data_len) != 0))
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct rec *x = &a->ev[i], *y = &b->ev[i];

		if (x->type != y->type || x->text != y->text || x->fin != y->fin ||
		    x->frame_len != y->frame_len || x->message_done != y->message_done ||
		    x->len != y->len || x->code != y->code || x->ctl_hash != y->ctl_hash)
			return false;
	}
	return true;
}

static bool ends_in_utf8_error(const struct run *r)
{
	return r->n && r->ev[r->n - 1].type == CS_WS_EV_ERROR &&
	       r->ev[r->n - 1].code == CS_WS_CLOSE_BAD_DATA;
}

/* ---- UTF-8 against a reference -------------------------------------------------- */

/* 1: valid and complete, 0: invalid, -1: valid but ends mid-character. */
static int ref_utf8(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t need;

		if (p[i] < 0x80) {
			i++;
			continue;
		} else if ((p[i] & 0xE0) == 0xC0) {
			cp = p[i] & 0x1F;
			need = 1;
		} else if ((p[i] & 0xF0) == 0xE0) {
			cp = p[i] & 0x0F;
			need = 2;
		} else if ((p[i] & 0xF8) == 0xF0) {
			cp = p[i] & 0x07;
			need = 3;
		} else {
			return 0;
		}
		size_t k;
		for (k = 1; k <= need && i + k < n; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if (k <= need) {
			/* Truncated: would any continuation make it valid? Check
			 * the shortest completion, with the smallest and largest
			 * continuation bytes. */
			uint8_t tmp[4];
			size_t have = n - i;

			memcpy(tmp, p + i, have);
			for (int fill = 0x80; fill <= 0xBF; fill += 0x3F) {
				memset(tmp + have, fill, need + 1 - have);
				if (ref_utf8(tmp, need + 1) == 1)
					return -1;
			}
			/* Some middle value may be needed (E0 A0.., F0 90.., F4 8F..). */
			for (int b = 0x80; b <= 0xBF; b++) {
				memset(tmp + have, 0x80, need + 1 - have);
				tmp[have] = (uint8_t)b;
				if (ref_utf8(tmp, need + 1) == 1)
					return -1;
			}
			return 0;
		}
		if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000))
			return 0; /* overlong */
		if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += need + 1;
	}
	return 1;
}

static void utf8(const uint8_t *p, size_t n, size_t split)
{
	struct cs_utf8 u = {0};
	size_t cut = n ? split % (n + 1) : 0;
	bool ok = cs_utf8_feed(&u, p, cut) && cs_utf8_feed(&u, p + cut, n - cut);
	int want = ref_utf8(p, n);

	if (want == 1)
		CHECK(ok && cs_utf8_complete(&u));
	else if (want == -1)
		CHECK(ok && !cs_utf8_complete(&u));
	else
		CHECK(!ok);
}

/* ---- headers and masks -------------------------------------------------------------- */

static void header_roundtrip(const uint8_t *p, size_t n, bool server)
{
	uint8_t hdr[CS_WS_MAX_HEADER], key[4] = {0};
	uint64_t len = 0;
	struct cs_ws_rx rx;
	struct cs_ws_event ev;
	size_t h;

	for (size_t i = 0; i < n && i < 8; i++)
		len = len << 8 | p[i];
	len &= (UINT64_C(1) << 63) - 1;
	if (n > 8)
		memcpy(key, p + 8, n - 8 < 4 ? n - 8 : 4);
	h = cs_ws_header(hdr, CS_WS_OP_BINARY, true, len, server ? key : NULL);
	CHECK(h == 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + (server ? 4 : 0));
	cs_ws_rx_init(&rx, server, UINT64_MAX);
	CHECK(cs_ws_rx_feed(&rx, hdr, h, &ev) == h);
	if (len == 0) {
		CHECK(ev.type == CS_WS_EV_DATA && ev.len == 0 && ev.frame_end);
	} else {
		CHECK(ev.type == CS_WS_EV_NONE);
		CHECK(rx.frame_len == len);
	}

	/* Masking twice, at any offset, restores the data. */
	uint8_t *m = malloc(n ? n : 1);
	CHECK(m);
	if (n)
		memcpy(m, p, n);
	cs_ws_mask(m, n, key, len);
	cs_ws_mask(m, n, key, len);
	CHECK(n == 0 || memcmp(m, p, n) == 0);
	free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run two, one;
	static const uint64_t max_frames[] = {125, 65535, 1 << 20, UINT64_MAX};
	bool server;
	uint64_t max_frame;
	size_t split;

	if (size < 2)
		return 0;
	server = data[0] & 1;
	max_frame = max_frames[(data[0] >> 1) & 3];
	split = data[1];
	data += 2;
	size -= 2;

	feed(&two, server, max_frame, data, size, size ? split % size + 1 : 1);
	feed(&one, server, max_frame, data, size, 1);
	if (ends_in_utf8_error(&two) || ends_in_utf8_error(&one))
		CHECK(ends_in_utf8_error(&two) && ends_in_utf8_error(&one));
	else
		CHECK(same(&two, &one));
	free(two.data);
	free(one.data);

	utf8(data, size, split);
	header_roundtrip(data, size, server);
	return 0;
}
