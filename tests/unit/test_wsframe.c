/*
 * test_wsframe.c - ws/wsframe.c: the frame receiver in both roles, fed
 * whole and one byte at a time (each piece ending before an unreadable
 * page), every close-code path, the length forms and limits, fragments
 * with control frames between them, UTF-8 validation across chunks and
 * frames, the header builder, masking and the handshake's accept key.
 *
 * Every run checks each event's own consistency (offsets, counters,
 * flags) as it goes and merges the DATA events of one frame, so a
 * byte-at-a-time run and a whole run must give the same merged record.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "wsframe.h"

TestSuite(wsframe, .timeout = 120);

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- building input ------------------------------------------------------ */

struct bytes {
	uint8_t *p;
	size_t len, cap;
};

static void add(struct bytes *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void bytes_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* A frame whose first byte is b0 (FIN, RSV, opcode as given), in the
 * shortest length form, masked with KEY when masked. */
static void frame(struct bytes *b, bool masked, uint8_t b0, const void *payload, size_t len)
{
	uint8_t hdr[CS_WS_MAX_HEADER];
	size_t h = cs_ws_header(hdr, b0 & 0x0F, b0 & 0x80, len, masked ? KEY : NULL);
	size_t at = b->len;

	hdr[0] = b0;
	add(b, hdr, h);
	add(b, payload, len);
	if (masked)
		cs_ws_mask(b->p + at + h, len, KEY, 0);
}

/* ---- running the receiver ---------------------------------------------------- */

/* One merged event: DATA events of a frame become one. */
struct rec {
	uint8_t type;
	bool text, fin;
	uint64_t frame_len, message_done;
	size_t off, len; /* DATA: in run.data; others: in ctl */
	uint16_t code;
	uint8_t ctl[CS_WS_MAX_CONTROL];
};

struct run {
	struct rec ev[64];
	size_t n;
	struct bytes data; /* every DATA payload, in order */
	size_t raw_events; /* events before merging */
};

static void run_free(struct run *r)
{
	bytes_free(&r->data);
}

/* What the events so far say about the stream. */
struct seen {
	bool in_frame;      /* a DATA frame has begun and not ended */
	bool in_message;    /* a message has begun and not ended */
	bool text;          /* its first frame's type */
	uint64_t done;      /* its bytes so far */
};

/* Check ev against what came before it and append it to r. */
static void record(struct run *r, const struct cs_ws_event *ev, struct seen *st)
{
	struct rec *last = r->n ? &r->ev[r->n - 1] : NULL;

	r->raw_events++;
	if (ev->type == CS_WS_EV_DATA) {
		cr_assert(ev->len > 0 || ev->frame_len == 0, "an empty DATA event of a non-empty frame");
		cr_assert_eq(ev->frame_start, !st->in_frame, "frame_start");
		cr_assert_leq(ev->frame_done, ev->frame_len);
		cr_assert_eq(ev->frame_end, ev->frame_done == ev->frame_len, "frame_end");
		if (ev->frame_start) {
			cr_assert_eq(ev->frame_done, ev->len);
			if (!st->in_message) {
				st->in_message = true;
				st->text = ev->text;
				st->done = 0;
			}
		} else {
			cr_assert(last && last->type == CS_WS_EV_DATA);
			cr_assert_eq(ev->frame_done, last->len + ev->len, "frame_done");
			cr_assert_eq(ev->frame_len, last->frame_len);
			cr_assert_eq(ev->fin, last->fin);
		}
		cr_assert_eq(ev->text, st->text, "text must stay the first frame's");
		cr_assert_eq(ev->message_done, st->done + ev->len, "message_done %llu, want %llu",
			     (unsigned long long)ev->message_done,
			     (unsigned long long)(st->done + ev->len));
		st->done = ev->message_done;
		st->in_frame = !ev->frame_end;
		if (ev->fin && ev->frame_end)
			st->in_message = false;
		if (!ev->frame_start) {
			last->len += ev->len;
			last->message_done = ev->message_done;
			add(&r->data, ev->data, ev->len);
			return;
		}
		cr_assert_lt(r->n, sizeof(r->ev) / sizeof(r->ev[0]));
		struct rec *nr = &r->ev[r->n++];
		memset(nr, 0, sizeof(*nr));
		nr->type = CS_WS_EV_DATA;
		nr->text = ev->text;
		nr->fin = ev->fin;
		nr->frame_len = ev->frame_len;
		nr->message_done = ev->message_done;
		nr->off = r->data.len;
		nr->len = ev->len;
		add(&r->data, ev->data, ev->len);
		return;
	}
	/* Control frames and errors come only between frames. */
	cr_assert(!st->in_frame || ev->type == CS_WS_EV_ERROR, "event %u inside a frame", ev->type);
	cr_assert_lt(r->n, sizeof(r->ev) / sizeof(r->ev[0]));
	struct rec *nr = &r->ev[r->n++];
	memset(nr, 0, sizeof(*nr));
	nr->type = ev->type;
	nr->code = ev->code;
	if (ev->type == CS_WS_EV_PING || ev->type == CS_WS_EV_PONG || ev->type == CS_WS_EV_CLOSE) {
		cr_assert_leq(ev->len, CS_WS_MAX_CONTROL);
		nr->len = ev->len;
		if (ev->len)
			memcpy(nr->ctl, ev->data, ev->len);
	}
}

/*
 * Feed in[0..len) to a fresh receiver in pieces of step bytes (0: whole),
 * each piece in its own guarded copy, until everything is consumed or an
 * ERROR or CLOSE ends the stream (then one more feed must repeat it).
 */
static void run_feed(struct run *r, bool server, uint64_t max_frame, const uint8_t *in, size_t len,
		     size_t step)
{
	struct cs_ws_rx rx;
	struct seen st = {0};
	size_t pos = 0;

	memset(r, 0, sizeof(*r));
	cs_ws_rx_init(&rx, server, max_frame);
	struct guard g;

	if (step == 0)
		step = len ? len : 1;
	guard_alloc(&g, step);
	while (pos < len) {
		size_t n = len - pos < step ? len - pos : step, sub = 0;
		uint8_t *buf = guard_place(&g, in + pos, n);
		unsigned loops = 0;

		for (;;) {
			struct cs_ws_event ev;
			size_t c = cs_ws_rx_feed(&rx, buf + sub, n - sub, &ev);

			cr_assert_leq(c, n - sub, "consumed %zu of %zu", c, n - sub);
			cr_assert_lt(++loops, 100000u);
			if (ev.type == CS_WS_EV_DATA)
				cr_assert(ev.data >= buf + sub && ev.data + ev.len <= buf + sub + c,
					  "DATA must lie in what this call consumed");
			sub += c;
			if (ev.type == CS_WS_EV_NONE) {
				cr_assert_eq(sub, n, "NONE with input left");
				break;
			}
			record(r, &ev, &st);
			if (ev.type == CS_WS_EV_ERROR || ev.type == CS_WS_EV_CLOSE) {
				struct cs_ws_event again;
				uint8_t more[3] = {0x81, 0x00, 0x00};

				cr_assert_eq(cs_ws_rx_feed(&rx, more, sizeof(more), &again), sizeof(more));
				cr_assert_eq(again.type, ev.type);
				cr_assert_eq(again.code, ev.code);
				cr_assert_eq(again.len, ev.len);
				guard_free(&g);
				return;
			}
			if (sub == n)
				break;
		}
		pos += n;
	}
	guard_free(&g);
}

static bool recs_equal(const struct run *a, const struct run *b)
{
	if (a->n != b->n || a->data.len != b->data.len)
		return false;
	if (a->data.len && memcmp(a->data.p, b->data.p, a->data.len) != 0)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct rec *x = &a->ev[i], *y = &b->ev[i];

		if (x->type != y->type || x->text != y->text || x->fin != y->fin ||
		    x->frame_len != y->frame_len || x->message_done != y->message_done ||
		    x->len != y->len || x->code != y->code)
			return false;
		if (x->type != CS_WS_EV_DATA && memcmp(x->ctl, y->ctl, x->len) != 0)
			return false;
	}
	return true;
}

/*
 * Run in whole, one byte at a time and in 7-byte pieces; all three must
 * agree (except that a UTF-8 error may cut DATA short at different
 * points, so with want_error the DATA bytes are compared only up to the
 * error). Leaves the whole run in *r.
 */
static void run_all(struct run *r, bool server, uint64_t max_frame, const struct bytes *in)
{
	static const size_t steps[] = {1, 7};

	run_feed(r, server, max_frame, in->p, in->len, 0);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct run other;
		bool utf8_error = r->n && r->ev[r->n - 1].type == CS_WS_EV_ERROR &&
				  r->ev[r->n - 1].code == CS_WS_CLOSE_BAD_DATA;

		run_feed(&other, server, max_frame, in->p, in->len, steps[i]);
		if (utf8_error) {
			cr_assert_eq(other.ev[other.n - 1].type, CS_WS_EV_ERROR, "step %zu", steps[i]);
			cr_assert_eq(other.ev[other.n - 1].code, CS_WS_CLOSE_BAD_DATA);
		} else {
			cr_assert(recs_equal(r, &other), "step %zu disagrees with the whole run", steps[i]);
		}
		run_free(&other);
	}
}

/* The last event is an ERROR with code. */
static void expect_error(const struct run *r, uint16_t code)
{
	cr_assert_gt(r->n, 0);
	cr_expect_eq(r->ev[r->n - 1].type, CS_WS_EV_ERROR, "last event %u, want ERROR",
		     r->ev[r->n - 1].type);
	cr_expect_eq(r->ev[r->n - 1].code, code, "code %u, want %u", r->ev[r->n - 1].code, code);
}

/* Run one frame in the given role (masked as that role needs) and expect code. */
static void expect_frame_error(bool server, uint8_t b0, const void *payload, size_t len, uint16_t code)
{
	struct bytes in = {0};
	struct run r;

	frame(&in, server, b0, payload, len);
	run_all(&r, server, 65535, &in);
	expect_error(&r, code);
	run_free(&r);
	bytes_free(&in);
}

static void expect_data(const struct run *r, size_t i, bool text, bool fin, const char *payload,
			uint64_t message_done)
{
	cr_assert_lt(i, r->n);
	const struct rec *e = &r->ev[i];
	size_t len = strlen(payload);

	cr_expect_eq(e->type, CS_WS_EV_DATA, "event %zu: type %u", i, e->type);
	cr_expect_eq(e->text, text, "event %zu: text", i);
	cr_expect_eq(e->fin, fin, "event %zu: fin", i);
	cr_expect_eq(e->frame_len, len);
	cr_expect(e->len == len && memcmp(r->data.p + e->off, payload, len) == 0,
		  "event %zu: \"%.*s\", want \"%s\"", i, (int)e->len, r->data.p + e->off, payload);
	cr_expect_eq(e->message_done, message_done, "event %zu: message_done", i);
}

static void expect_control(const struct run *r, size_t i, uint8_t type, const char *payload,
			   uint16_t code)
{
	cr_assert_lt(i, r->n);
	const struct rec *e = &r->ev[i];

	cr_expect_eq(e->type, type, "event %zu: type %u, want %u", i, e->type, type);
	cr_expect(e->len == strlen(payload) && memcmp(e->ctl, payload, e->len) == 0,
		  "event %zu: \"%.*s\", want \"%s\"", i, (int)e->len, e->ctl, payload);
	if (type == CS_WS_EV_CLOSE)
		cr_expect_eq(e->code, code);
}

/* ---- frames ----------------------------------------------------------------- */

Test(wsframe, rfc_examples_in_both_roles)
{
	/* RFC 6455 5.7: a single-frame unmasked text message to a client. */
	static const uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
	/* The same, masked, to a server. */
	static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
	struct bytes in = {0};
	struct run r;

	add(&in, unmasked, sizeof(unmasked));
	run_all(&r, false, 65535, &in);
	cr_assert_eq(r.n, 1);
	expect_data(&r, 0, true, true, "Hello", 5);
	run_free(&r);
	bytes_free(&in);

	add(&in, masked, sizeof(masked));
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 1);
	expect_data(&r, 0, true, true, "Hello", 5);
	run_free(&r);

	/* Each role refuses the other's framing. */
	run_all(&r, false, 65535, &in);
	expect_error(&r, CS_WS_CLOSE_PROTOCOL);
	cr_expect_eq(r.n, 1);
	run_free(&r);
	bytes_free(&in);
	add(&in, unmasked, sizeof(unmasked));
	run_all(&r, true, 65535, &in);
	expect_error(&r, CS_WS_CLOSE_PROTOCOL);
	run_free(&r);
	bytes_free(&in);
}

Test(wsframe, payload_is_unmasked_in_place_across_calls)
{
	uint8_t payload[300];
	struct bytes in = {0};
	struct run r;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	frame(&in, true, 0x82, payload, sizeof(payload));
	frame(&in, true, 0x82, payload, 5);
	/* run_all feeds it in 1- and 7-byte pieces: key offsets must follow. */
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 2);
	cr_expect_eq(r.ev[0].len, sizeof(payload));
	cr_expect(memcmp(r.data.p, payload, sizeof(payload)) == 0);
	cr_expect(!r.ev[0].text);
	cr_expect(memcmp(r.data.p + r.ev[1].off, payload, 5) == 0);
	run_free(&r);
	bytes_free(&in);
}

Test(wsframe, fragments_with_control_frames_between_them)
{
	for (int server = 0; server <= 1; server++) {
		struct bytes in = {0};
		struct run r;

		frame(&in, server, 0x01, "Hel", 3);          /* text, FIN clear */
		frame(&in, server, 0x89, "ping!", 5);        /* ping */
		frame(&in, server, 0x00, "", 0);             /* empty continuation */
		frame(&in, server, 0x8A, "", 0);             /* empty pong */
		frame(&in, server, 0x00, "lo, ", 4);         /* continuation */
		frame(&in, server, 0x8A, "pong", 4);         /* pong */
		frame(&in, server, 0x80, "world", 5);        /* final continuation */
		frame(&in, server, 0x02, "\xff\xfe", 2);     /* binary, FIN clear */
		frame(&in, server, 0x80, "\x00", 1);         /* its end */
		frame(&in, server, 0x81, "", 0);             /* an empty text message */
		run_all(&r, server, 65535, &in);
		cr_assert_eq(r.n, 10, "role %d: %zu events", server, r.n);
		expect_data(&r, 0, true, false, "Hel", 3);
		expect_control(&r, 1, CS_WS_EV_PING, "ping!", 0);
		expect_data(&r, 2, true, false, "", 3);
		expect_control(&r, 3, CS_WS_EV_PONG, "", 0);
		expect_data(&r, 4, true, false, "lo, ", 7);
		expect_control(&r, 5, CS_WS_EV_PONG, "pong", 0);
		expect_data(&r, 6, true, true, "world", 12);
		cr_expect_eq(r.ev[7].type, CS_WS_EV_DATA);
		cr_expect(!r.ev[7].text && !r.ev[7].fin);
		cr_expect_eq(r.ev[8].len, 1);
		cr_expect(!r.ev[8].text && r.ev[8].fin);
		cr_expect_eq(r.ev[8].message_done, 3);
		expect_data(&r, 9, true, true, "", 0);
		run_free(&r);
		bytes_free(&in);
	}
}

Test(wsframe, close_between_fragments_ends_the_stream)
{
	struct bytes in = {0};
	struct run r;

	frame(&in, false, 0x01, "ab", 2);
	frame(&in, false, 0x88, "\x03\xe8" "bye", 5);
	frame(&in, false, 0x80, "cd", 2); /* never parsed */
	run_all(&r, false, 65535, &in);
	cr_assert_eq(r.n, 2);
	expect_data(&r, 0, true, false, "ab", 2);
	expect_control(&r, 1, CS_WS_EV_CLOSE, "bye", 1000);
	run_free(&r);
	bytes_free(&in);
}

Test(wsframe, fragmentation_errors)
{
	for (int server = 0; server <= 1; server++) {
		struct bytes in = {0};
		struct run r;

		/* A continuation with no message open. */
		expect_frame_error(server, 0x80, "x", 1, CS_WS_CLOSE_PROTOCOL);
		expect_frame_error(server, 0x00, "x", 1, CS_WS_CLOSE_PROTOCOL);
		/* A new message while one is open. */
		frame(&in, server, 0x01, "a", 1);
		frame(&in, server, 0x81, "b", 1);
		run_all(&r, server, 65535, &in);
		cr_expect_eq(r.n, 2);
		expect_error(&r, CS_WS_CLOSE_PROTOCOL);
		run_free(&r);
		bytes_free(&in);
		frame(&in, server, 0x02, "a", 1);
		frame(&in, server, 0x02, "b", 1);
		run_all(&r, server, 65535, &in);
		expect_error(&r, CS_WS_CLOSE_PROTOCOL);
		run_free(&r);
		bytes_free(&in);
		/* After a finished message, a continuation has nothing to continue. */
		frame(&in, server, 0x01, "a", 1);
		frame(&in, server, 0x80, "b", 1);
		frame(&in, server, 0x80, "c", 1);
		run_all(&r, server, 65535, &in);
		cr_expect_eq(r.n, 3);
		expect_error(&r, CS_WS_CLOSE_PROTOCOL);
		run_free(&r);
		bytes_free(&in);
	}
}

Test(wsframe, header_bits_and_opcodes)
{
	for (int server = 0; server <= 1; server++) {
		expect_frame_error(server, 0xC1, "x", 1, CS_WS_CLOSE_PROTOCOL); /* RSV1 */
		expect_frame_error(server, 0xA1, "x", 1, CS_WS_CLOSE_PROTOCOL); /* RSV2 */
		expect_frame_error(server, 0x91, "x", 1, CS_WS_CLOSE_PROTOCOL); /* RSV3 */
		expect_frame_error(server, 0xC9, "", 0, CS_WS_CLOSE_PROTOCOL);  /* RSV on a ping */
		for (uint8_t op = 3; op <= 0xF; op++) {
			if (op == 8)
				op = 0xB;
			expect_frame_error(server, (uint8_t)(0x80 | op), "x", 1, CS_WS_CLOSE_PROTOCOL);
		}
		/* Control frames: FIN clear, or a payload over 125 bytes. */
		expect_frame_error(server, 0x09, "x", 1, CS_WS_CLOSE_PROTOCOL);
		expect_frame_error(server, 0x08, "", 0, CS_WS_CLOSE_PROTOCOL);
		expect_frame_error(server, 0x0A, "", 0, CS_WS_CLOSE_PROTOCOL);
		static uint8_t big[126];
		expect_frame_error(server, 0x89, big, 126, CS_WS_CLOSE_PROTOCOL);
		expect_frame_error(server, 0x8A, big, 126, CS_WS_CLOSE_PROTOCOL);
		expect_frame_error(server, 0x88, big, 126, CS_WS_CLOSE_PROTOCOL);
	}
}

Test(wsframe, control_frames_of_125_bytes)
{
	uint8_t p[125];
	struct bytes in = {0};
	struct run r;

	for (size_t i = 0; i < sizeof(p); i++)
		p[i] = (uint8_t)('a' + i % 26);
	frame(&in, true, 0x89, p, 125);
	frame(&in, true, 0x8A, p, 125);
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 2);
	cr_expect_eq(r.ev[0].type, CS_WS_EV_PING);
	cr_expect(r.ev[0].len == 125 && memcmp(r.ev[0].ctl, p, 125) == 0);
	cr_expect_eq(r.ev[1].type, CS_WS_EV_PONG);
	cr_expect(r.ev[1].len == 125 && memcmp(r.ev[1].ctl, p, 125) == 0);
	run_free(&r);
	bytes_free(&in);

	/* A close with a code and a 123-byte reason. */
	uint8_t c[125];
	c[0] = 0x0f;
	c[1] = 0xa0; /* 4000 */
	memcpy(c + 2, p, 123);
	frame(&in, false, 0x88, c, 125);
	run_all(&r, false, 65535, &in);
	cr_assert_eq(r.n, 1);
	cr_expect_eq(r.ev[0].type, CS_WS_EV_CLOSE);
	cr_expect_eq(r.ev[0].code, 4000);
	cr_expect(r.ev[0].len == 123 && memcmp(r.ev[0].ctl, p, 123) == 0);
	run_free(&r);
	bytes_free(&in);
}

/* ---- close frames ---------------------------------------------------------- */

static void run_close(bool server, const void *payload, size_t len, struct run *r)
{
	struct bytes in = {0};

	frame(&in, server, 0x88, payload, len);
	run_all(r, server, 65535, &in);
	bytes_free(&in);
}

Test(wsframe, close_codes)
{
	static const struct {
		unsigned code;
		bool ok;
	} t[] = {
		{0, false},     {999, false},  {1000, true},  {1001, true},  {1002, true},  {1003, true},
		{1004, false},  {1005, false}, {1006, false}, {1007, true},  {1008, true},  {1009, true},
		{1010, true},   {1011, true},  {1012, false}, {1013, false}, {1014, false}, {1015, false},
		{1016, false},  {2000, false}, {2999, false}, {3000, true},  {3999, true},  {4000, true},
		{4999, true},   {5000, false}, {65535, false},
	};

	for (int server = 0; server <= 1; server++) {
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			uint8_t p[2] = {(uint8_t)(t[i].code >> 8), (uint8_t)t[i].code};
			struct run r;

			run_close(server, p, 2, &r);
			cr_assert_eq(r.n, 1);
			if (t[i].ok) {
				expect_control(&r, 0, CS_WS_EV_CLOSE, "", (uint16_t)t[i].code);
			} else {
				cr_expect_eq(r.ev[0].type, CS_WS_EV_ERROR, "code %u accepted", t[i].code);
				cr_expect_eq(r.ev[0].code, CS_WS_CLOSE_PROTOCOL);
			}
			run_free(&r);
		}
	}
}

Test(wsframe, close_payload_forms)
{
	struct run r;

	/* No payload: 1005, which is never sent but reported. */
	run_close(true, "", 0, &r);
	cr_assert_eq(r.n, 1);
	expect_control(&r, 0, CS_WS_EV_CLOSE, "", CS_WS_CLOSE_NO_STATUS);
	run_free(&r);
	/* One byte: a protocol error. */
	run_close(true, "\x03", 1, &r);
	expect_error(&r, CS_WS_CLOSE_PROTOCOL);
	run_free(&r);
	/* A UTF-8 reason. */
	run_close(false, "\x03\xe9" "gr\xc3\xbc\xc3\x9f \xe2\x82\xac", 12, &r);
	expect_control(&r, 0, CS_WS_EV_CLOSE, "gr\xc3\xbc\xc3\x9f \xe2\x82\xac", 1001);
	run_free(&r);
	/* A reason that is not UTF-8, or ends inside a character. */
	run_close(false, "\x03\xe8\xff", 3, &r);
	expect_error(&r, CS_WS_CLOSE_BAD_DATA);
	run_free(&r);
	run_close(false, "\x03\xe8" "ab\xe2\x82", 6, &r);
	expect_error(&r, CS_WS_CLOSE_BAD_DATA);
	run_free(&r);
	/* A bad code wins over a bad reason. */
	run_close(false, "\x03\xed\xff", 3, &r);
	expect_error(&r, CS_WS_CLOSE_PROTOCOL);
	run_free(&r);
}

Test(wsframe, close_and_error_are_reported_again)
{
	struct cs_ws_rx rx;
	struct cs_ws_event ev;
	uint8_t close[] = {0x88, 0x04, 0x0b, 0xb8, 'h', 'i', 0x81, 0x01, 'x'};
	uint8_t junk[] = {0x81, 0x01, 'y'};

	cs_ws_rx_init(&rx, false, 100);
	cr_assert_eq(cs_ws_rx_feed(&rx, close, sizeof(close), &ev), 6);
	cr_assert_eq(ev.type, CS_WS_EV_CLOSE);
	cr_assert_eq(ev.code, 3000);
	cr_assert(ev.len == 2 && memcmp(ev.data, "hi", 2) == 0);
	cr_assert_eq(cs_ws_rx_feed(&rx, close + 6, 3, &ev), 3);
	cr_assert_eq(ev.type, CS_WS_EV_CLOSE);
	cr_assert_eq(ev.code, 3000);
	cr_assert(ev.len == 2 && memcmp(ev.data, "hi", 2) == 0);
	cr_assert_eq(cs_ws_rx_feed(&rx, NULL, 0, &ev), 0);
	cr_assert_eq(ev.type, CS_WS_EV_CLOSE);

	cs_ws_rx_init(&rx, false, 100);
	uint8_t bad[] = {0x81, 0x03, 'a', 0xff, 'b', 0x81, 0x01, 'c'};
	cr_assert_eq(cs_ws_rx_feed(&rx, bad, sizeof(bad), &ev), sizeof(bad));
	cr_assert_eq(ev.type, CS_WS_EV_ERROR);
	cr_assert_eq(ev.code, CS_WS_CLOSE_BAD_DATA);
	cr_assert_eq(cs_ws_rx_feed(&rx, junk, sizeof(junk), &ev), sizeof(junk));
	cr_assert_eq(ev.type, CS_WS_EV_ERROR);
	cr_assert_eq(ev.code, CS_WS_CLOSE_BAD_DATA);
}

/* ---- lengths ----------------------------------------------------------------- */

static void expect_one_frame_of(size_t len, uint64_t max_frame, bool server)
{
	uint8_t *p = malloc(len ? len : 1);
	struct bytes in = {0};
	struct run r;

	cr_assert_not_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i ^ (i >> 8));
	frame(&in, server, 0x82, p, len);
	run_all(&r, server, max_frame, &in);
	cr_assert_eq(r.n, 1, "len %zu: %zu events", len, r.n);
	cr_assert_eq(r.ev[0].type, CS_WS_EV_DATA, "len %zu: type %u", len, r.ev[0].type);
	cr_expect_eq(r.ev[0].frame_len, len);
	cr_expect_eq(r.ev[0].len, len);
	cr_expect(len == 0 || memcmp(r.data.p, p, len) == 0);
	run_free(&r);
	bytes_free(&in);
	free(p);
}

Test(wsframe, payload_length_forms)
{
	static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 100000};
	uint8_t hdr[CS_WS_MAX_HEADER];

	cr_expect_eq(cs_ws_header(hdr, 2, true, 125, NULL), 2);
	cr_expect_eq(cs_ws_header(hdr, 2, true, 126, NULL), 4);
	cr_expect_eq(cs_ws_header(hdr, 2, true, 65535, NULL), 4);
	cr_expect_eq(cs_ws_header(hdr, 2, true, 65536, NULL), 10);
	for (int server = 0; server <= 1; server++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			expect_one_frame_of(lens[i], 1 << 20, server);
	expect_one_frame_of(65535, 65535, true);
}

Test(wsframe, max_frame)
{
	static uint8_t p[65536];
	struct bytes in = {0};
	struct run r;

	frame(&in, true, 0x82, p, 65536);
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 1);
	expect_error(&r, CS_WS_CLOSE_TOO_BIG);
	run_free(&r);
	bytes_free(&in);

	/* Refused from the header alone, before any payload arrives. */
	uint8_t hdr[CS_WS_MAX_HEADER];
	size_t h = cs_ws_header(hdr, CS_WS_OP_TEXT, true, 1000, NULL);
	add(&in, hdr, h);
	run_all(&r, false, 999, &in);
	expect_error(&r, CS_WS_CLOSE_TOO_BIG);
	run_free(&r);
	bytes_free(&in);
	/* Continuations count per frame. */
	frame(&in, false, 0x01, p, 600);
	frame(&in, false, 0x80, p, 600);
	run_all(&r, false, 600, &in);
	cr_assert_eq(r.n, 2);
	cr_expect_eq(r.ev[1].message_done, 1200);
	run_free(&r);
	bytes_free(&in);
	/* 64-bit lengths far beyond it. */
	static const uint8_t huge[] = {0x82, 0x7F, 0, 0, 0x01, 0, 0, 0, 0, 0};
	add(&in, huge, sizeof(huge));
	run_all(&r, false, 1 << 20, &in);
	expect_error(&r, CS_WS_CLOSE_TOO_BIG);
	run_free(&r);
	bytes_free(&in);
	/* Control frames are bounded by 125, not max_frame. */
	frame(&in, false, 0x89, "0123456789", 10);
	run_all(&r, false, 4, &in);
	expect_control(&r, 0, CS_WS_EV_PING, "0123456789", 0);
	run_free(&r);
	bytes_free(&in);
}

Test(wsframe, non_minimal_and_oversized_length_encodings)
{
	static const uint8_t cases[][10] = {
		{0x82, 0x7E, 0x00, 0x7D},                   /* 125 in 16 bits */
		{0x82, 0x7E, 0x00, 0x00},                   /* 0 in 16 bits */
		{0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, /* 65535 in 64 bits */
		{0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0x00, 0x7D}, /* 125 in 64 bits */
		{0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0},    /* top bit set */
		{0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
	};
	static const size_t lens[] = {4, 4, 10, 10, 10, 10};

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct bytes in = {0};
		struct run r;

		add(&in, cases[i], lens[i]);
		run_all(&r, false, UINT64_MAX, &in);
		cr_assert_eq(r.n, 1, "case %zu", i);
		expect_error(&r, CS_WS_CLOSE_PROTOCOL);
		run_free(&r);
		bytes_free(&in);
	}
	/* The smallest of each form is fine. */
	static const uint8_t ok16[] = {0x82, 0x7E, 0x00, 0x7E};
	static const uint8_t ok64[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0};
	struct cs_ws_rx rx;
	struct cs_ws_event ev;
	uint8_t b[10];

	cs_ws_rx_init(&rx, false, UINT64_MAX);
	memcpy(b, ok16, 4);
	cr_expect_eq(cs_ws_rx_feed(&rx, b, 4, &ev), 4);
	cr_expect_eq(ev.type, CS_WS_EV_NONE);
	cs_ws_rx_init(&rx, false, UINT64_MAX);
	memcpy(b, ok64, 10);
	cr_expect_eq(cs_ws_rx_feed(&rx, b, 10, &ev), 10);
	cr_expect_eq(ev.type, CS_WS_EV_NONE);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

Test(wsframe, utf8_validator)
{
	static const char *const valid[] = {
		"", "plain ascii", "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xef\xbf\xbf",
		"\xed\x9f\xbf", "\xee\x80\x80", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
		"\xf3\xbf\xbf\xbf", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	};
	static const char *const invalid[] = {
		"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
		"\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80",
		"\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff", "\xc2\x41", "\xe2\x82\x41",
		"\xf0\x9f\x98\x41", "a\xc2", "\xe2\x82",
	};

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		size_t len = strlen(valid[i]);

		/* Whole, and split at every point. */
		for (size_t cut = 0; cut <= len; cut++) {
			struct cs_utf8 u = {0};

			cr_expect(cs_utf8_feed(&u, (const uint8_t *)valid[i], cut), "valid %zu", i);
			cr_expect(cs_utf8_feed(&u, (const uint8_t *)valid[i] + cut, len - cut), "valid %zu", i);
			cr_expect(cs_utf8_complete(&u), "valid %zu cut %zu", i, cut);
		}
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		size_t len = strlen(invalid[i]);
		struct cs_utf8 u = {0};
		bool ok = cs_utf8_feed(&u, (const uint8_t *)invalid[i], len) && cs_utf8_complete(&u);

		cr_expect(!ok, "invalid %zu was accepted", i);
		/* One byte at a time, it fails too (or ends incomplete). */
		struct cs_utf8 v = {0};
		bool failed = false;
		for (size_t k = 0; k < len && !failed; k++)
			failed = !cs_utf8_feed(&v, (const uint8_t *)invalid[i] + k, 1);
		cr_expect(failed || !cs_utf8_complete(&v), "invalid %zu bytewise", i);
	}
	/* Incomplete is not invalid: the first bytes of a character pass. */
	struct cs_utf8 u = {0};
	cr_expect(cs_utf8_feed(&u, (const uint8_t *)"\xf0\x9f\x98", 3));
	cr_expect(!cs_utf8_complete(&u));
	cr_expect(cs_utf8_feed(&u, (const uint8_t *)"\x80", 1));
	cr_expect(cs_utf8_complete(&u));
}

Test(wsframe, utf8_across_frames_and_chunks)
{
	struct bytes in = {0};
	struct run r;

	/* The euro sign split across three frames, with a ping between. */
	frame(&in, true, 0x01, "a\xe2", 2);
	frame(&in, true, 0x89, "", 0);
	frame(&in, true, 0x00, "\x82", 1);
	frame(&in, true, 0x80, "\xac!", 2);
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 4);
	cr_expect_eq(r.ev[3].type, CS_WS_EV_DATA);
	cr_expect_eq(r.ev[3].message_done, 5);
	cr_expect(r.data.len == 5 && memcmp(r.data.p, "a\xe2\x82\xac!", 5) == 0);
	run_free(&r);
	bytes_free(&in);

	/* A message that ends inside a character: 1007 at its last frame. */
	frame(&in, true, 0x01, "a\xe2", 2);
	frame(&in, true, 0x80, "\x82", 1);
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 2);
	expect_data(&r, 0, true, false, "a\xe2", 2);
	expect_error(&r, CS_WS_CLOSE_BAD_DATA);
	run_free(&r);
	bytes_free(&in);
	frame(&in, true, 0x81, "\xf0\x9f\x98", 3);
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 1);
	expect_error(&r, CS_WS_CLOSE_BAD_DATA);
	run_free(&r);
	bytes_free(&in);

	/* Binary messages are not checked, nor is a message left open. */
	frame(&in, true, 0x82, "\xff\xe2", 2);
	frame(&in, true, 0x01, "\xe2\x82", 2);
	run_all(&r, true, 65535, &in);
	cr_assert_eq(r.n, 2);
	cr_expect_eq(r.ev[1].type, CS_WS_EV_DATA);
	run_free(&r);
	bytes_free(&in);

	static const char *const bad[] = {
		"\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "ok\x80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		frame(&in, false, 0x81, bad[i], strlen(bad[i]));
		run_all(&r, false, 65535, &in);
		expect_error(&r, CS_WS_CLOSE_BAD_DATA);
		run_free(&r);
		bytes_free(&in);
	}
}

Test(wsframe, utf8_error_stops_at_the_first_bad_byte)
{
	struct bytes in = {0};
	struct run r;

	frame(&in, false, 0x81, "ab\xff" "cd", 5);
	/* One byte at a time: "a" and "b" are delivered, then the error. */
	run_feed(&r, false, 65535, in.p, in.len, 1);
	cr_assert_eq(r.n, 2);
	cr_expect_eq(r.ev[0].len, 2);
	cr_expect_eq(r.raw_events, 3);
	expect_error(&r, CS_WS_CLOSE_BAD_DATA);
	run_free(&r);
	bytes_free(&in);
}

/* ---- headers, masks, keys ---------------------------------------------------- */

Test(wsframe, header_builder)
{
	static const uint8_t key[4] = {1, 2, 3, 4};
	uint8_t h[CS_WS_MAX_HEADER];

	cr_assert_eq(cs_ws_header(h, CS_WS_OP_TEXT, true, 0, NULL), 2);
	cr_expect(memcmp(h, "\x81\x00", 2) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_BINARY, false, 125, NULL), 2);
	cr_expect(memcmp(h, "\x02\x7d", 2) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_CONT, true, 126, NULL), 4);
	cr_expect(memcmp(h, "\x80\x7e\x00\x7e", 4) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_TEXT, true, 65535, NULL), 4);
	cr_expect(memcmp(h, "\x81\x7e\xff\xff", 4) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_TEXT, true, 65536, NULL), 10);
	cr_expect(memcmp(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_BINARY, true, 0x0102030405060708ull, NULL), 10);
	cr_expect(memcmp(h, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_PING, true, 5, key), 6);
	cr_expect(memcmp(h, "\x89\x85\x01\x02\x03\x04", 6) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_CLOSE, true, 300, key), 8);
	cr_expect(memcmp(h, "\x88\xfe\x01\x2c\x01\x02\x03\x04", 8) == 0);
	cr_assert_eq(cs_ws_header(h, CS_WS_OP_TEXT, true, 70000, key), 14);
	cr_expect(memcmp(h, "\x81\xff\x00\x00\x00\x00\x00\x01\x11\x70\x01\x02\x03\x04", 14) == 0);
}

Test(wsframe, mask_twice_is_identity_and_offsets_line_up)
{
	uint8_t a[100], b[100], orig[100];

	for (size_t i = 0; i < sizeof(a); i++)
		orig[i] = (uint8_t)(i * 31 + 7);
	memcpy(a, orig, sizeof(a));
	cs_ws_mask(a, sizeof(a), KEY, 0);
	cr_expect(memcmp(a, orig, sizeof(a)) != 0);
	cr_expect_eq(a[0], orig[0] ^ KEY[0]);
	cr_expect_eq(a[5], orig[5] ^ KEY[1]);
	cs_ws_mask(a, sizeof(a), KEY, 0);
	cr_expect(memcmp(a, orig, sizeof(a)) == 0);

	/* Masking in pieces with the right offsets equals masking at once. */
	memcpy(a, orig, sizeof(a));
	memcpy(b, orig, sizeof(b));
	cs_ws_mask(a, sizeof(a), KEY, 0);
	cs_ws_mask(b, 3, KEY, 0);
	cs_ws_mask(b + 3, 58, KEY, 3);
	cs_ws_mask(b + 61, 39, KEY, 61);
	cr_expect(memcmp(a, b, sizeof(a)) == 0);
	/* A large offset wraps as its low bits say. */
	memcpy(b, orig, sizeof(b));
	cs_ws_mask(b + 1, 99, KEY, (1ull << 40) + 1);
	cr_expect(memcmp(a + 1, b + 1, 99) == 0);
}

/* The word-at-a-time masking agrees with the definition (byte i ^=
 * key[(offset + i) % 4]) for every alignment, offset and short length. */
Test(wsframe, mask_matches_the_definition_at_every_alignment)
{
	uint8_t buf[80], want[80];

	for (size_t align = 0; align < 8; align++)
		for (uint64_t off = 0; off < 4; off++)
			for (size_t len = 0; len <= 64; len++) {
				for (size_t i = 0; i < sizeof(buf); i++)
					buf[i] = want[i] = (uint8_t)(i * 131 + len);
				for (size_t i = 0; i < len; i++)
					want[align + i] ^= KEY[(off + i) & 3];
				cs_ws_mask(buf + align, len, KEY, off);
				cr_assert(memcmp(buf, want, sizeof(buf)) == 0,
					  "align %zu, offset %llu, length %zu", align,
					  (unsigned long long)off, len);
			}
}

Test(wsframe, accept_key)
{
	char out[29];
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";

	cr_assert_eq(cs_ws_accept_key(key, strlen(key), out), 0);
	cr_expect_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

	key = "AAAAAAAAAAAAAAAAAAAAAA==";
	cr_assert_eq(cs_ws_accept_key(key, strlen(key), out), 0);
	cr_expect_eq(strlen(out), 28);

	static const char *const bad[] = {
		"dGhlIHNhbXBsZSBub25jZQ=",    /* 23 */
		"dGhlIHNhbXBsZSBub25jZQ===",  /* 25 */
		"dGhlIHNhbXBsZSBub25jZQAA",   /* no padding: 18 bytes */
		"dGhlIHNhbXBsZSBub25jZ===",   /* 15 bytes */
		"dGhlIHNhbXBsZSBub25j ZQ=",   /* a blank */
		"dGhlIHNhbXBsZSBub25j*Q==",   /* not base64 */
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(cs_ws_accept_key(bad[i], strlen(bad[i]), out), -1, "\"%s\"", bad[i]);
	/* A NUL inside counts as a bad character. */
	cr_expect_eq(cs_ws_accept_key("dGhlIHNhbXBsZSBu\0b25jZQ==", 24, out), -1);
}
