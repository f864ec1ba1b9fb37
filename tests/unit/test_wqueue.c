/*
 * test_wqueue.c - dispatch/wqueue.c on its own: a bare cs_loop carrying
 * only an ops table and a fake backend, a bare cs_conn, and the cs__wq_*
 * calls a backend makes. No kernel, no event loop.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define MAXREL 4096

static uintptr_t released[MAXREL];
static int nreleased;
static int drains;
static int be_closes;
static size_t queued_at_drain;

static void on_release(cs_loop *l, uintptr_t cookie)
{
	cr_assert_lt(nreleased, MAXREL);
	released[nreleased++] = cookie;
}

static void on_drain(cs_conn *c)
{
	drains++;
	queued_at_drain = c->wq.bytes;
}

static const struct cs_conn_ops ops = {.drain = on_drain, .release = on_release};

/* The one backend call wqueue.c can reach: closing a lingering conn. */
static void fake_close(cs_loop *l, cs_conn *c) { be_closes++; }
static const struct cs__backend fake_be = {.name = "fake", .close = fake_close};

static cs_loop loop;
static cs_conn conn;
static struct cs__wqueue *q = &conn.wq;

static void setup(void)
{
	memset(&loop, 0, sizeof(loop));
	memset(&conn, 0, sizeof(conn));
	loop.ops = &ops;
	loop.be = &fake_be;
	conn.loop = &loop;
	nreleased = drains = be_closes = 0;
	queued_at_drain = (size_t)-1;
}

static void teardown(void)
{
	cs__wq_clear(&loop, q);
	free(q->ring);
}

TestSuite(wqueue, .init = setup, .fini = teardown, .timeout = 10);

static void push(const char *s, uintptr_t cookie)
{
	cr_assert_eq(cs__wq_push(q, s, strlen(s), cookie), 0);
}

/* The bytes the next sendmsg would carry, as one string. */
static char *gather(int max)
{
	static char out[1 << 16];
	struct iovec iov[CS__IOV_MAX];
	int n = cs__wq_iov(q, iov, max);
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		cr_assert_lt(len + iov[i].iov_len, sizeof(out));
		memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	out[len] = 0;
	return out;
}

Test(wqueue, idle_queue_holds_no_ring)
{
	cr_expect_null(q->ring);
	struct iovec iov[4];
	cr_expect_eq(cs__wq_iov(q, iov, 4), 0);
}

Test(wqueue, push_appends_and_counts_bytes)
{
	push("hello", 1);
	push(" world", 2);
	cr_expect_eq(q->count, 2);
	cr_expect_eq(q->bytes, 11);
	cr_expect_str_eq(gather(CS__IOV_MAX), "hello world");
	cr_expect_eq(nreleased, 0);
}

Test(wqueue, iov_points_at_caller_memory_without_copying)
{
	static const char data[] = "abcdef";
	cr_assert_eq(cs__wq_push(q, data, 6, 7), 0);
	struct iovec iov[2];
	cr_assert_eq(cs__wq_iov(q, iov, 2), 1);
	cr_expect_eq(iov[0].iov_base, (void *)data);
	cr_expect_eq(iov[0].iov_len, 6);
}

Test(wqueue, iov_stops_at_max)
{
	push("a", 1);
	push("b", 2);
	push("c", 3);
	cr_expect_str_eq(gather(2), "ab");
}

Test(wqueue, partial_send_inside_one_entry_keeps_it)
{
	push("abcdef", 1);
	push("gh", 2);
	cs__wq_sent(&loop, &conn, 4);
	cr_expect_eq(nreleased, 0);
	cr_expect_eq(q->bytes, 4);
	cr_expect_str_eq(gather(CS__IOV_MAX), "efgh");
	cr_expect_eq(drains, 0);
}

Test(wqueue, partial_send_across_entry_boundaries)
{
	push("abc", 10);
	push("defg", 11);
	push("hi", 12);
	push("jklm", 13);
	cs__wq_sent(&loop, &conn, 5); /* all of abc, de of defg */
	cr_assert_eq(nreleased, 1);
	cr_expect_eq(released[0], 10);
	cr_expect_str_eq(gather(CS__IOV_MAX), "fghijklm");
	cs__wq_sent(&loop, &conn, 4); /* fg, hi: an entry ends exactly */
	cr_assert_eq(nreleased, 3);
	cr_expect_eq(released[1], 11);
	cr_expect_eq(released[2], 12);
	cr_expect_str_eq(gather(CS__IOV_MAX), "jklm");
	cr_expect_eq(q->bytes, 4);
	cr_expect_eq(drains, 0);
}

Test(wqueue, sending_everything_releases_in_order_then_drains_once)
{
	push("one", 1);
	push("two", 2);
	push("three", 3);
	cs__wq_sent(&loop, &conn, 11);
	cr_assert_eq(nreleased, 3);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(released[i], (uintptr_t)i + 1);
	cr_expect_eq(drains, 1);
	cr_expect_eq(queued_at_drain, 0, "drain runs once the queue is empty");
	cr_expect_eq(q->count, 0);
	cr_expect_eq(q->bytes, 0);
	cr_expect_eq(loop.stats.bytes_out, 11);
}

Test(wqueue, failure_records_error_releases_all_and_drains)
{
	push("one", 1);
	push("two", 2);
	cs__wq_sent(&loop, &conn, 1);
	cs__wq_failed(&loop, &conn, -EPIPE);
	cr_expect_eq(conn.err, -EPIPE);
	cr_assert_eq(nreleased, 2);
	cr_expect_eq(released[0], 1);
	cr_expect_eq(released[1], 2);
	cr_expect_eq(q->bytes, 0);
	cr_expect_eq(q->count, 0);
	cr_expect_eq(drains, 1);
}

Test(wqueue, first_failure_sticks)
{
	push("x", 1);
	cs__wq_failed(&loop, &conn, -ECONNRESET);
	cs__wq_failed(&loop, &conn, -EPIPE);
	cr_expect_eq(conn.err, -ECONNRESET);
	cr_expect_eq(nreleased, 1);
}

Test(wqueue, clear_releases_every_entry_without_draining)
{
	push("a", 5);
	push("b", 6);
	push("c", 7);
	cs__wq_sent(&loop, &conn, 1);
	cs__wq_clear(&loop, q);
	cr_assert_eq(nreleased, 3);
	cr_expect_eq(released[1], 6);
	cr_expect_eq(released[2], 7);
	cr_expect_eq(q->bytes, 0);
	cr_expect_eq(q->sent, 0);
	cr_expect_eq(drains, 0);
	push("d", 8); /* usable again */
	cr_expect_str_eq(gather(CS__IOV_MAX), "d");
}

Test(wqueue, closing_conn_is_not_told_about_drain)
{
	conn.flags |= CS__CLOSING;
	push("a", 1);
	cs__wq_sent(&loop, &conn, 1);
	cr_expect_eq(nreleased, 1);
	cr_expect_eq(drains, 0);
	cr_expect_eq(be_closes, 0);
}

Test(wqueue, lingering_conn_is_closed_when_the_queue_empties)
{
	conn.flags |= CS__CLOSING | CS__LINGER;
	push("ab", 1);
	push("cd", 2);
	cs__wq_sent(&loop, &conn, 3);
	cr_expect_eq(be_closes, 0);
	cs__wq_sent(&loop, &conn, 1);
	cr_expect_eq(be_closes, 1);
	cr_expect_eq(drains, 0);
	cr_expect_not(conn.flags & CS__LINGER);
	cr_expect_eq(nreleased, 2);
}

Test(wqueue, lingering_conn_is_closed_when_sending_fails)
{
	conn.flags |= CS__CLOSING | CS__LINGER;
	push("ab", 1);
	cs__wq_failed(&loop, &conn, -EPIPE);
	cr_expect_eq(be_closes, 1);
	cr_expect_eq(drains, 0);
	cr_expect_eq(nreleased, 1);
}

Test(wqueue, fin_asked_for_goes_out_when_the_queue_empties)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	conn.fd = sv[0];
	conn.flags |= CS__SHUT_WR;
	push("ab", 1);
	push("cd", 2);
	cs__wq_sent(&loop, &conn, 3);
	char b;
	cr_expect_eq(recv(sv[1], &b, 1, MSG_DONTWAIT), -1, "FIN before the queue emptied");
	cs__wq_sent(&loop, &conn, 1);
	cr_expect_eq(recv(sv[1], &b, 1, MSG_DONTWAIT), 0, "no FIN once the queue emptied");
	cr_expect_not(conn.flags & CS__SHUT_WR, "FIN is sent once");
	close(sv[0]);
	close(sv[1]);
}

Test(wqueue, ring_grows_while_wrapped_and_keeps_fifo_order)
{
	static const char *w[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
	for (int i = 0; i < 4; i++)
		push(w[i], (uintptr_t)i);
	cr_assert_eq(q->cap, 4);
	cs__wq_sent(&loop, &conn, 3); /* head moves to 3 */
	for (int i = 4; i < 7; i++)
		push(w[i], (uintptr_t)i); /* wraps to 0, 1, 2 */
	cr_expect_eq(q->cap, 4, "no growth while there is room");
	cr_expect_str_eq(gather(CS__IOV_MAX), "3456");
	for (int i = 7; i < 10; i++)
		push(w[i], (uintptr_t)i); /* full while wrapped: grows */
	cr_expect_geq(q->cap, 7);
	cr_expect_str_eq(gather(CS__IOV_MAX), "3456789");
	cs__wq_sent(&loop, &conn, 7);
	cr_assert_eq(nreleased, 10);
	for (int i = 0; i < 10; i++)
		cr_expect_eq(released[i], (uintptr_t)i);
}

/* Random pushes and sends against a model: a byte string plus the list of
 * entry ends. Catches any ring/offset mix-up the cases above miss. */
Test(wqueue, random_pushes_and_partial_sends_match_a_model)
{
	static char pool[256];
	static char model[1 << 17];
	static size_t ends[MAXREL];
	size_t mhead = 0, mtail = 0;
	int ehead = 0, etail = 0, next_cookie = 0;
	for (size_t i = 0; i < sizeof(pool); i++)
		pool[i] = (char)('a' + i % 26);
	srand(4242);
	for (int step = 0; step < 3000 && etail < MAXREL; step++) {
		if (rand() % 3 != 0 || ehead == etail) {
			size_t off = (size_t)(rand() % 200), len = 1 + (size_t)(rand() % 40);
			cr_assert_eq(cs__wq_push(q, pool + off, len, (uintptr_t)next_cookie++), 0);
			memcpy(model + mtail, pool + off, len);
			mtail += len;
			ends[etail++] = mtail;
		} else {
			size_t n = 1 + (size_t)rand() % (mtail - mhead);
			cs__wq_sent(&loop, &conn, n);
			mhead += n;
			while (ehead < etail && ends[ehead] <= mhead)
				ehead++;
		}
		cr_assert_eq(q->bytes, mtail - mhead, "step %d", step);
		cr_assert_eq(nreleased, ehead, "step %d: %d released, model %d", step, nreleased, ehead);
		cr_assert_eq(q->count, (uint32_t)(etail - ehead));
		char *g = gather(CS__IOV_MAX);
		size_t want = mtail - mhead;
		if (etail - ehead > CS__IOV_MAX)
			want = ends[ehead + CS__IOV_MAX - 1] - mhead;
		cr_assert_eq(strlen(g), want, "step %d", step);
		cr_assert_eq(memcmp(g, model + mhead, want), 0, "step %d: iovecs differ", step);
		if (mhead == mtail) /* every entry is released: restart the model */
			mhead = mtail = 0;
	}
	for (int i = 0; i < nreleased; i++)
		cr_assert_eq(released[i], (uintptr_t)i, "release %d out of order", i);
}
