/*
 * test_backend.c - the dispatch.h contract, through the public API only,
 * against the backend named by CS_TEST_BACKEND: accept (and its stop), recv, send and the
 * write queue, connect, close, and stale completions after slot reuse.
 * The peer side of every connection is a plain socket the test drives.
 */
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include "helpers.h"

/* ---- what the loop told us ---------------------------------------------- */

/* Per-conn record, the conn's udata. */
struct crec {
	bool closed; /* the test closed the conn: no callback may follow */
	int recv_calls;
	ssize_t last_n;
	char last[CS_RECV_CHUNK];
	size_t total; /* bytes received through callbacks */
	int accept_calls;
	int accepted_fd;
	int connect_calls;
	int connect_err;
	int drain_calls;
	size_t queued_at_drain;
	int readable_calls;
};

#define MAXREL 1024
static uintptr_t released[MAXREL];
static int nreleased;

static cs_loop *loop;

static struct crec *rec_of(cs_conn *c, const char *what)
{
	struct crec *r = cs_conn_udata(c);
	cr_assert_not_null(r, "%s callback for a conn without owner", what);
	cr_assert_not(r->closed, "%s callback after cs_conn_close()", what);
	return r;
}

/* Optional extra action on a recv callback, for tests that act from inside
 * one. */
static void (*recv_hook)(cs_conn *c);

static void on_recv(cs_conn *c, const char *data, ssize_t n)
{
	struct crec *r = rec_of(c, "recv");
	cr_assert_leq(n, (ssize_t)CS_RECV_CHUNK);
	r->recv_calls++;
	r->last_n = n;
	if (n > 0) {
		memcpy(r->last, data, (size_t)n);
		r->total += (size_t)n;
	}
	if (recv_hook)
		recv_hook(c);
}

static void on_accept(cs_conn *c, int fd)
{
	struct crec *r = rec_of(c, "accept");
	r->accept_calls++;
	r->accepted_fd = fd;
}

static void on_connect(cs_conn *c, int err)
{
	struct crec *r = rec_of(c, "connect");
	r->connect_calls++;
	r->connect_err = err;
}

/* Optional extra action on a drain callback. */
static void (*drain_hook)(cs_conn *c);

static void on_drain(cs_conn *c)
{
	struct crec *r = rec_of(c, "drain");
	r->drain_calls++;
	r->queued_at_drain = cs_conn_queued(c);
	if (drain_hook)
		drain_hook(c);
}

static void on_release(cs_loop *l, uintptr_t cookie)
{
	cr_assert_eq(l, loop);
	cr_assert_lt(nreleased, MAXREL);
	released[nreleased++] = cookie;
}

static void on_readable(cs_conn *c)
{
	rec_of(c, "readable")->readable_calls++;
}

static const struct cs_conn_ops ops = {
	.recv = on_recv, .accept = on_accept, .connect = on_connect,
	.drain = on_drain, .release = on_release, .readable = on_readable,
};

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	nreleased = 0;
	recv_hook = NULL;
	drain_hook = NULL;
	loop = t_loop_create(NULL, &ops, NULL);
}

static void teardown(void)
{
	if (loop)
		cs_loop_destroy(loop);
	loop = NULL;
}

TestSuite(backend, .init = setup, .fini = teardown, .timeout = 60);

/* ---- sockets ------------------------------------------------------------ */

static int tcp_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	return fd;
}

/* A socket bound to 127.0.0.1 on a free port; listening when backlog > 0. */
static int tcp_bound(struct sockaddr_in *addr, int backlog)
{
	int fd = tcp_socket();
	*addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	socklen_t sl = sizeof(*addr);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &sl), 0);
	if (backlog)
		cr_assert_eq(listen(fd, backlog), 0);
	return fd;
}

static int tcp_connect(const struct sockaddr_in *addr)
{
	int fd = tcp_socket();
	cr_assert_eq(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
	return fd;
}

/* A connected TCP pair: *ours goes under the loop, *peer stays with the test. */
static void tcp_pair(int *ours, int *peer)
{
	struct sockaddr_in addr;
	int l = tcp_bound(&addr, 1);
	*peer = tcp_connect(&addr);
	*ours = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(*ours, 0);
	close(l);
}

static void set_bufs(int fd, int opt, int bytes)
{
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes)), 0);
}

static cs_conn *open_conn(int fd, struct crec *r)
{
	memset(r, 0, sizeof(*r));
	r->accepted_fd = -1;
	cs_conn *c;
	int e = cs_conn_open(loop, fd, r, &c);
	cr_assert_eq(e, 0, "cs_conn_open: %s", strerror(-e));
	return c;
}

static void close_conn(cs_conn *c, struct crec *r, bool graceful)
{
	r->closed = true;
	cs_conn_close(c, graceful);
}

static uint32_t conns_in_use(void)
{
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	return st.conns;
}

/* The next answer of cs_conn_recv(), waiting for the callback if need be.
 * Copies the bytes to out (CS_RECV_CHUNK bytes) when n > 0. */
static ssize_t recv_next(cs_conn *c, char *out)
{
	struct crec *r = cs_conn_udata(c);
	const char *data;
	ssize_t n = cs_conn_recv(c, &data);
	if (n == -EAGAIN) {
		int before = r->recv_calls;
		cr_assert(T_POLL_UNTIL(loop, r->recv_calls > before, T_DEADLINE_MS),
			  "no recv callback after -EAGAIN");
		cr_assert_eq(r->recv_calls, before + 1, "one -EAGAIN, one callback");
		n = r->last_n;
		data = r->last;
	}
	if (n > 0)
		memcpy(out, data, (size_t)n);
	return n;
}

/* Receive until end of stream or len bytes; returns the byte count. */
static size_t recv_all(cs_conn *c, char *out, size_t len, ssize_t *end)
{
	static char chunk[CS_RECV_CHUNK];
	size_t got = 0;
	for (;;) {
		ssize_t n = recv_next(c, chunk);
		if (n <= 0) {
			*end = n;
			return got;
		}
		cr_assert_leq(got + (size_t)n, len, "more bytes than were sent");
		memcpy(out + got, chunk, (size_t)n);
		got += (size_t)n;
	}
}

static void write_all(int fd, const char *s)
{
	size_t len = strlen(s);
	cr_assert_eq(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Pattern for bulk transfers: byte at stream offset p. */
static inline char pat(size_t p) { return (char)(p ^ (p >> 8) ^ (p >> 16) ^ (p >> 24)); }

static char *pattern(size_t len)
{
	char *b = malloc(len);
	cr_assert_not_null(b);
	for (size_t p = 0; p < len; p++)
		b[p] = pat(p);
	return b;
}

/* Read what the peer can get right now, checking the pattern from *got on.
 * Returns read()'s last answer: > 0 read something, 0 EOF, -errno. */
static ssize_t peer_read_some(int fd, size_t *got, size_t max)
{
	static char buf[65536];
	size_t want = max < sizeof(buf) ? max : sizeof(buf);
	ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	for (ssize_t i = 0; i < n; i++)
		cr_assert_eq(buf[i], pat(*got + (size_t)i), "byte %zu corrupt or out of order",
			     *got + (size_t)i);
	*got += (size_t)n;
	return n;
}

/* Read (and check) the pattern as the loop sends it until the FIN, within
 * 30 s; returns the bytes read. */
static size_t peer_read_until_fin(int peer)
{
	size_t got = 0;
	ssize_t n = 1;
	uint64_t end = t_now_ms() + 30000;
	while (n != 0 && t_now_ms() < end) {
		n = peer_read_some(peer, &got, 64 * 1024);
		cr_assert(n >= 0 || n == -EAGAIN, "peer read: %s", strerror((int)-n));
		t_poll(loop, n > 0 ? 0 : 1);
	}
	cr_assert_eq(n, 0, "no FIN within the deadline");
	return got;
}

/* ---- accept ------------------------------------------------------------- */

Test(backend, accept_without_pending_connection_calls_back_later)
{
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	t_poll(loop, 0);
	cr_expect_eq(lr.accept_calls, 0);

	int client = tcp_connect(&addr);
	cr_assert(T_POLL_UNTIL(loop, lr.accept_calls == 1, T_DEADLINE_MS));
	cr_assert_geq(lr.accepted_fd, 0, "accept failed: %s", strerror(-lr.accepted_fd));
	struct sockaddr_in a, b;
	socklen_t sl = sizeof(a);
	cr_assert_eq(getpeername(lr.accepted_fd, (struct sockaddr *)&a, &sl), 0);
	sl = sizeof(b);
	cr_assert_eq(getsockname(client, (struct sockaddr *)&b, &sl), 0);
	cr_expect_eq(a.sin_port, b.sin_port, "the fd is the client's connection");
	cr_expect(fcntl(lr.accepted_fd, F_GETFL) & O_NONBLOCK);
	cr_expect(fcntl(lr.accepted_fd, F_GETFD) & FD_CLOEXEC);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.accepted, 1);
	close(lr.accepted_fd);
	close(client);
}

Test(backend, accept_hands_out_queued_connections_at_once)
{
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	int clients[3];
	for (int i = 0; i < 3; i++)
		clients[i] = tcp_connect(&addr);
	int fds[3], n = 0;
	int r = cs_conn_accept(l);
	if (r >= 0) {
		fds[n++] = r;
	} else {
		cr_assert_eq(r, -EAGAIN);
		cr_assert(T_POLL_UNTIL(loop, lr.accept_calls == 1, T_DEADLINE_MS));
		cr_assert_geq(lr.accepted_fd, 0);
		fds[n++] = lr.accepted_fd;
	}
	t_poll_for(loop, 20); /* nobody asks: no callback */
	cr_expect_leq(lr.accept_calls, 1);
	while (n < 3) {
		r = cs_conn_accept(l);
		cr_assert_geq(r, 0, "connection %d of 3 not handed out at once: %s", n + 1, strerror(-r));
		fds[n++] = r;
	}
	cr_expect_eq(cs_conn_accept(l), -EAGAIN, "only three connections were made");
	for (int i = 0; i < 3; i++) {
		close(fds[i]);
		close(clients[i]);
	}
}

Test(backend, accept_cancel_keeps_the_connection_for_the_next_accept)
{
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	cs_conn_accept_cancel(l);
	int client = tcp_connect(&addr);
	t_poll_for(loop, 50);
	cr_expect_eq(lr.accept_calls, 0, "accept callback after cancel");
	int fd = cs_conn_accept(l);
	if (fd == -EAGAIN) {
		cr_assert(T_POLL_UNTIL(loop, lr.accept_calls == 1, T_DEADLINE_MS));
		fd = lr.accepted_fd;
	}
	cr_expect_geq(fd, 0, "the connection was lost: %s", strerror(-fd));
	close(fd);
	close(client);
}

Test(backend, many_pending_connections_are_all_handed_out)
{
	enum { N = 300 };
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, N + 16), &lr);
	static int clients[N];
	for (int i = 0; i < N; i++)
		clients[i] = tcp_connect(&addr);
	int n = 0;
	uint64_t end = t_now_ms() + T_DEADLINE_MS;
	while (n < N && t_now_ms() < end) {
		int fd = cs_conn_accept(l);
		if (fd == -EAGAIN) {
			int before = lr.accept_calls;
			if (!T_POLL_UNTIL(loop, lr.accept_calls > before, 2000))
				break;
			fd = lr.accepted_fd;
		}
		cr_assert_geq(fd, 0, "accept: %s", strerror(-fd));
		close(fd);
		n++;
	}
	cr_expect_eq(n, N, "%d of %d connections handed out", n, N);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.accepted, (uint64_t)N);
	for (int i = 0; i < N; i++)
		close(clients[i]);
}

Test(backend, accept_on_a_connected_socket_is_einval)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	cr_expect_eq(cs_conn_accept(c), -EINVAL);
	close(peer);
}

/* ---- accept stop -------------------------------------------------------- */

/* Open fds of this process (the directory stream's own fd included, the
 * same in every call). */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Another fd for the listener's socket: what a process that shares it
 * (the master, a new worker) accepts through. Non-blocking, as the loop
 * made the open file. */
static int share_listener(cs_conn *l)
{
	int d = fcntl(cs_conn_fd(l), F_DUPFD_CLOEXEC, 0);
	cr_assert_geq(d, 0);
	return d;
}

/* cs_conn_accept()'s next answer, waiting for the one callback that a
 * -EAGAIN promises. */
static int accept_next(cs_conn *l, struct crec *lr)
{
	int fd = cs_conn_accept(l);
	if (fd != -EAGAIN)
		return fd;
	int before = lr->accept_calls;
	cr_assert(T_POLL_UNTIL(loop, lr->accept_calls > before, T_DEADLINE_MS),
		  "no accept callback after -EAGAIN");
	cr_assert_eq(lr->accept_calls, before + 1, "one -EAGAIN, one callback");
	return lr->accepted_fd;
}

/* Write mark to fd and close it: the client learns who accepted it. */
static void mark_and_close(int fd, char mark)
{
	cr_assert_eq(send(fd, &mark, 1, MSG_NOSIGNAL), 1);
	close(fd);
}

/* Accept through the shared fd until the kernel's queue is empty, marking
 * each connection 'D'; returns how many there were. */
static int accept_rest(int shared, int max)
{
	int n = 0, fd;
	while ((fd = accept4(shared, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		cr_assert_lt(n, max, "more connections queued than were made");
		mark_and_close(fd, 'D');
		n++;
	}
	cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "accept4 on the shared fd: %s", strerror(errno));
	return n;
}

/* What the client's side saw first: the mark byte, 0 for EOF or -errno. */
static int client_outcome(int client)
{
	struct pollfd p = {.fd = client, .events = POLLIN};
	cr_assert_eq(poll(&p, 1, T_DEADLINE_MS), 1, "the client heard nothing");
	char c;
	ssize_t n = recv(client, &c, 1, MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	return n == 0 ? 0 : (unsigned char)c;
}

Test(backend, accept_stop_leaves_every_unasked_connection_to_the_socket)
{
	/* Neither backend takes connections before the owner asks (the
	 * io_uring one polls its listeners): BEFORE connect while the owner
	 * asks for none, AFTER right after the stop; all of them must stay in
	 * the kernel's queue for the other holder of the socket. */
	enum { BEFORE = 300, AFTER = 32, N = BEFORE + AFTER };
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, N + 16), &lr);
	int shared = share_listener(l);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN); /* io_uring: arms the poll */
	cs_conn_accept_cancel(l);		  /* ... and the owner takes none */
	static int clients[N];
	for (int i = 0; i < BEFORE; i++)
		clients[i] = tcp_connect(&addr);
	t_poll_for(loop, 50); /* a backend that took connections ahead would now */
	cr_expect_eq(lr.accept_calls, 0);

	cs_conn_accept_stop(l);
	cs_conn_accept_stop(l); /* idempotent */
	for (int i = BEFORE; i < N; i++)
		clients[i] = tcp_connect(&addr);

	int taken = 0, fd;
	while ((fd = accept_next(l, &lr)) >= 0) {
		cr_assert_lt(taken, N, "the stopped listener hands out more than was made");
		mark_and_close(fd, 'L');
		taken++;
	}
	cr_assert_eq(fd, -ESHUTDOWN, "after what was taken: %s", strerror(-fd));
	cr_expect_eq(cs_conn_accept(l), -ESHUTDOWN, "-ESHUTDOWN is for good");
	t_poll_for(loop, 20);
	cr_expect_eq(cs_conn_accept(l), -ESHUTDOWN, "a late completion brought more");

	int rest = accept_rest(shared, N);
	cr_expect_eq(taken + rest, N, "%d through the loop + %d through the shared fd, %d made", taken, rest,
		     N);
	cr_expect_eq(taken, 0, "%d connections were taken though nobody asked for them", taken);

	int seen_l = 0, seen_d = 0;
	for (int i = 0; i < N; i++) {
		int o = client_outcome(clients[i]);
		cr_assert(o == 'L' || o == 'D', "client %d: %s", i,
			  o <= 0 ? (o ? strerror(-o) : "end of stream") : "wrong byte");
		seen_l += o == 'L';
		seen_d += o == 'D';
		close(clients[i]);
	}
	cr_expect_eq(seen_l, taken);
	cr_expect_eq(seen_d, rest);
	close(shared);
}

/* Stop while the owner waits; submitted: the io_uring poll reached the
 * kernel before the stop (otherwise it is still in the submission queue). */
static void stop_pending_accept(bool submitted)
{
	int fds0 = fd_count();
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	if (submitted)
		t_poll(loop, 0);
	cs_conn_accept_stop(l);
	cr_expect_eq(lr.accept_calls, 0, "answered from inside cs_conn_accept_stop()");
	cr_assert(T_POLL_UNTIL(loop, lr.accept_calls == 1, T_DEADLINE_MS),
		  "the pending accept got no answer");
	cr_expect_eq(lr.accepted_fd, -ESHUTDOWN, "answer %d", lr.accepted_fd);
	t_poll_for(loop, 20);
	cr_expect_eq(lr.accept_calls, 1, "answered more than once");
	cr_expect_eq(cs_conn_accept(l), -ESHUTDOWN);
	close_conn(l, &lr, true);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS));
	cr_expect_eq(fd_count(), fds0, "fds leaked");
}

Test(backend, accept_stop_answers_a_pending_accept_with_eshutdown)
{
	stop_pending_accept(true);
}

Test(backend, accept_stop_before_the_accept_reached_the_kernel_answers_it_too)
{
	stop_pending_accept(false);
}

Test(backend, accept_stop_with_a_pending_accept_and_an_arriving_connection_loses_nothing)
{
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	int shared = share_listener(l);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	t_poll(loop, 0);
	int client = tcp_connect(&addr); /* races the stop on io_uring */
	cs_conn_accept_stop(l);
	cr_assert(T_POLL_UNTIL(loop, lr.accept_calls == 1, T_DEADLINE_MS));
	int fd = lr.accepted_fd, taken = 0;
	if (t_backend() == CS_BACKEND_EPOLL)
		cr_expect_eq(fd, -ESHUTDOWN, "epoll accepted after the stop");
	while (fd >= 0) { /* io_uring may have taken it before the cancel */
		mark_and_close(fd, 'L');
		taken++;
		fd = accept_next(l, &lr);
	}
	cr_assert_eq(fd, -ESHUTDOWN);
	int rest = accept_rest(shared, 1);
	cr_expect_eq(taken + rest, 1);
	int o = client_outcome(client);
	cr_expect(o == (taken ? 'L' : 'D'), "the client saw %d", o);
	close(client);
	close(shared);
}

Test(backend, connections_after_accept_stop_stay_in_the_kernel_queue)
{
	enum { M = 8 };
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	int shared = share_listener(l);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	t_poll(loop, 0);
	cs_conn_accept_stop(l);
	cr_assert(T_POLL_UNTIL(loop, lr.accept_calls == 1, T_DEADLINE_MS));
	cr_assert_eq(lr.accepted_fd, -ESHUTDOWN);
	t_poll_for(loop, 20); /* the cancel's own completion */

	int clients[M];
	for (int i = 0; i < M; i++)
		clients[i] = tcp_connect(&addr);
	for (int i = 0; i < 5; i++)
		cr_expect_eq(t_poll(loop, 10), 0, "poll %d: the stopped listener still wakes the loop", i);
	cr_expect_eq(cs_conn_accept(l), -ESHUTDOWN);
	cr_expect_eq(lr.accept_calls, 1);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.accepted, 0);

	cr_expect_eq(accept_rest(shared, M), M, "connections made after the stop left the kernel queue");
	for (int i = 0; i < M; i++) {
		cr_expect_eq(client_outcome(clients[i]), 'D', "client %d", i);
		close(clients[i]);
	}
	close(shared);
}

/* The stopped listener's queue holds connections (io_uring) when it is
 * closed: they are closed once, the fd numbers they free stay free of
 * late closes, and the socket still listens through the shared fd. */
Test(backend, close_after_accept_stop_keeps_the_socket_and_its_queue)
{
	enum { K = 8, SENTINELS = K + 4 };
	int fds0 = fd_count();
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 32), &lr);
	int shared = share_listener(l);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	cs_conn_accept_cancel(l);
	int clients[K];
	for (int i = 0; i < K; i++)
		clients[i] = tcp_connect(&addr);
	t_poll_for(loop, 50);
	cs_conn_accept_stop(l);
	close_conn(l, &lr, false); /* io_uring: the cancel is still in flight */

	/* Sentinels take the lowest free fd numbers: those the close freed at
	 * once, then those freed when the slot was (a second close of any of
	 * them would hit a sentinel). */
	int sentinel[2 * SENTINELS];
	for (int i = 0; i < SENTINELS; i++)
		cr_assert_geq(sentinel[i] = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS));
	for (int i = SENTINELS; i < 2 * SENTINELS; i++)
		cr_assert_geq(sentinel[i] = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	t_poll_for(loop, 50);
	for (int i = 0; i < 2 * SENTINELS; i++) {
		cr_expect_geq(fcntl(sentinel[i], F_GETFD), 0, "fd %d was closed by the loop", sentinel[i]);
		close(sentinel[i]);
	}

	/* Nothing was taken, so nothing was closed with the listener: every
	 * client is still queued for the shared fd. */
	int rest = accept_rest(shared, K), closed = 0, marked = 0;
	for (int i = 0; i < K; i++) {
		int o = client_outcome(clients[i]);
		cr_expect(o == 'D' || o == 0 || o == -ECONNRESET, "client %d saw %d", i, o);
		marked += o == 'D';
		closed += o == 0 || o == -ECONNRESET;
		close(clients[i]);
	}
	cr_expect_eq(marked, rest);
	cr_expect_eq(closed + marked, K);
	cr_expect_eq(closed, 0, "%d connections nobody asked for were taken and closed", closed);

	int listening = 0;
	socklen_t sl = sizeof(listening);
	cr_assert_eq(getsockopt(shared, SOL_SOCKET, SO_ACCEPTCONN, &listening, &sl), 0);
	cr_expect(listening, "the close shut the socket down");
	int late = tcp_connect(&addr);
	cr_expect_eq(accept_rest(shared, 1), 1, "the socket no longer accepts after the close");
	cr_expect_eq(client_outcome(late), 'D');
	close(late);
	close(shared);
	cr_expect_eq(fd_count(), fds0, "fds leaked");
}

Test(backend, loop_destroy_after_accept_stop_leaks_nothing)
{
	enum { K = 8 };
	cs_loop_destroy(loop); /* count fds without the loop's own */
	loop = NULL;
	int fds0 = fd_count();
	loop = t_loop_create(NULL, &ops, NULL);
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 32), &lr);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	cs_conn_accept_cancel(l);
	int clients[K];
	for (int i = 0; i < K; i++)
		clients[i] = tcp_connect(&addr);
	t_poll_for(loop, 50);
	cs_conn_accept_stop(l);
	cs_loop_destroy(loop); /* with the queue full and, on io_uring, the cancel in flight */
	loop = NULL;
	for (int i = 0; i < K; i++)
		close(clients[i]);
	cr_expect_eq(fd_count(), fds0, "fds leaked");
}

/* Closing a listener whose socket another fd keeps open (a master, a new
 * worker) must not leave it registered: its connections are not ours. */
Test(backend, a_closed_listener_whose_socket_is_shared_no_longer_wakes_the_loop)
{
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 16), &lr);
	int shared = share_listener(l);
	cr_assert_eq(cs_conn_accept(l), -EAGAIN);
	t_poll(loop, 0);
	close_conn(l, &lr, false);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS));
	t_poll_for(loop, 20);
	int client = tcp_connect(&addr);
	for (int i = 0; i < 5; i++)
		cr_expect_eq(t_poll(loop, 10), 0, "poll %d: the closed listener still wakes the loop", i);
	cr_expect_eq(accept_rest(shared, 1), 1);
	cr_expect_eq(client_outcome(client), 'D');
	close(client);
	close(shared);
}

Test(backend, accept_stop_on_a_connected_socket_changes_nothing)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	cs_conn_accept_stop(c);
	write_all(peer, "still");
	char buf[CS_RECV_CHUNK];
	cr_assert_eq(recv_next(c, buf), 5);
	cr_expect_eq(memcmp(buf, "still", 5), 0);
	close(peer);
}

/* ---- recv --------------------------------------------------------------- */

Test(backend, recv_without_data_calls_back_with_the_chunk)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	const char *data;
	cr_assert_eq(cs_conn_recv(c, &data), -EAGAIN);
	t_poll(loop, 0);
	cr_expect_eq(r.recv_calls, 0, "callback without data");
	write_all(sv[1], "hello");
	cr_assert(T_POLL_UNTIL(loop, r.recv_calls == 1, T_DEADLINE_MS));
	cr_assert_eq(r.last_n, 5);
	cr_expect_eq(memcmp(r.last, "hello", 5), 0);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.bytes_in, 5);
	close(sv[1]);
}

Test(backend, recv_returns_data_that_arrived_meanwhile_at_once)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	char buf[CS_RECV_CHUNK];
	write_all(sv[1], "first");
	cr_assert_eq(recv_next(c, buf), 5);
	int calls = r.recv_calls;
	write_all(sv[1], "second");
	t_poll_for(loop, 50); /* it arrives while nobody asks */
	cr_expect_eq(r.recv_calls, calls, "callback while nobody asked");
	const char *data;
	ssize_t n = cs_conn_recv(c, &data);
	cr_assert_eq(n, 6, "expected the waiting chunk at once, got %zd", n);
	cr_expect_eq(memcmp(data, "second", 6), 0);
	close(sv[1]);
}

Test(backend, recv_reports_end_of_stream_as_zero)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	const char *data;
	cr_assert_eq(cs_conn_recv(c, &data), -EAGAIN);
	shutdown(sv[1], SHUT_WR);
	cr_assert(T_POLL_UNTIL(loop, r.recv_calls == 1, T_DEADLINE_MS));
	cr_expect_eq(r.last_n, 0);
	close(sv[1]);
}

Test(backend, recv_delivers_data_then_end_of_stream)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	write_all(peer, "last words");
	close(peer);
	char got[64];
	ssize_t end;
	size_t n = recv_all(c, got, sizeof(got), &end);
	cr_expect_eq(n, 10);
	cr_expect_eq(memcmp(got, "last words", 10), 0);
	cr_expect_eq(end, 0);
}

Test(backend, recv_reports_reset_as_negative_errno)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	const char *data;
	cr_assert_eq(cs_conn_recv(c, &data), -EAGAIN);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	cr_assert_eq(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(peer); /* RST */
	cr_assert(T_POLL_UNTIL(loop, r.recv_calls == 1, T_DEADLINE_MS));
	cr_expect_eq(r.last_n, -ECONNRESET, "got %zd (%s)", r.last_n,
		     r.last_n < 0 ? strerror((int)-r.last_n) : "not an error");
}

Test(backend, recv_cancel_keeps_later_data_for_the_next_recv)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	const char *data;
	cr_assert_eq(cs_conn_recv(c, &data), -EAGAIN);
	cs_conn_recv_cancel(c);
	write_all(sv[1], "kept");
	t_poll_for(loop, 50);
	cr_expect_eq(r.recv_calls, 0, "recv callback after cancel");
	char buf[CS_RECV_CHUNK];
	ssize_t n = recv_next(c, buf);
	cr_assert_eq(n, 4, "got %zd", n);
	cr_expect_eq(memcmp(buf, "kept", 4), 0);
	close(sv[1]);
}

Test(backend, few_receive_buffers_still_serve_every_conn)
{
	enum { N = 16, PER_CONN = 64 * 1024 };
	cs_loop_destroy(loop);
	struct cs_loop_config cfg = {.recv_buffers = 2};
	loop = t_loop_create(&cfg, &ops, NULL);
	static struct crec r[N];
	cs_conn *c[N];
	int peer[N];
	bool waiting[N] = {0};
	size_t got[N] = {0};
	char *src = pattern(PER_CONN);
	for (int i = 0; i < N; i++) {
		int sv[2];
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		c[i] = open_conn(sv[0], &r[i]);
		peer[i] = sv[1];
	}
	for (int i = 0; i < N; i++) /* fits in the socket buffers */
		cr_assert_eq(send(peer[i], src, PER_CONN, MSG_DONTWAIT), PER_CONN);

	int done = 0;
	uint64_t end = t_now_ms() + 20000;
	while (done < N && t_now_ms() < end) {
		done = 0;
		for (int i = 0; i < N; i++) {
			if (waiting[i] && r[i].recv_calls) { /* the answer came */
				cr_assert_gt(r[i].last_n, 0, "conn %d: %zd", i, r[i].last_n);
				cr_assert_eq(memcmp(r[i].last, src + got[i], (size_t)r[i].last_n), 0);
				got[i] += (size_t)r[i].last_n;
				r[i].recv_calls = 0;
				waiting[i] = false;
			}
			while (!waiting[i] && got[i] < PER_CONN) {
				const char *data;
				ssize_t n = cs_conn_recv(c[i], &data);
				if (n == -EAGAIN) {
					waiting[i] = true;
					break;
				}
				cr_assert_gt(n, 0, "conn %d: %zd", i, n);
				cr_assert_eq(memcmp(data, src + got[i], (size_t)n), 0);
				got[i] += (size_t)n;
			}
			done += got[i] == PER_CONN;
		}
		if (done < N)
			t_poll(loop, 10);
	}
	for (int i = 0; i < N; i++)
		cr_expect_eq(got[i], PER_CONN, "conn %d got %zu bytes", i, got[i]);
	for (int i = 0; i < N; i++)
		close(peer[i]);
	free(src);
}

Test(backend, recv_on_a_listener_is_einval)
{
	struct sockaddr_in addr;
	struct crec lr;
	cs_conn *l = open_conn(tcp_bound(&addr, 4), &lr);
	const char *data;
	cr_expect_eq(cs_conn_recv(l, &data), -EINVAL);
	cr_expect_eq(cs_conn_send(l, "x", 1, 1), -EINVAL);
}

/* ---- send and the write queue ------------------------------------------ */

Test(backend, send_of_nothing_returns_zero_and_queues_nothing)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	cr_expect_eq(cs_conn_send(c, "", 0, 9), 0);
	t_poll_for(loop, 20);
	cr_expect_eq(nreleased, 0);
	cr_expect_eq(cs_conn_queued(c), 0);
	close(sv[1]);
}

Test(backend, small_send_reaches_peer_and_is_released)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	static const char msg[] = "ping";
	cr_assert_eq(cs_conn_send(c, msg, 4, 77), 1);
	cr_assert(T_POLL_UNTIL(loop, nreleased == 1 && r.drain_calls > 0, T_DEADLINE_MS));
	cr_expect_eq(released[0], 77);
	cr_expect_eq(r.queued_at_drain, 0);
	char buf[8];
	cr_assert_eq(read(sv[1], buf, sizeof(buf)), 4);
	cr_expect_eq(memcmp(buf, "ping", 4), 0);
	close(sv[1]);
}

enum { BULK_CHUNK = 256 * 1024, BULK_CHUNKS = 16, BULK = BULK_CHUNK * BULK_CHUNKS };

/* Queue BULK pattern bytes in BULK_CHUNKS sends, cookies 1..BULK_CHUNKS. */
static void queue_bulk(cs_conn *c, const char *big)
{
	for (int i = 0; i < BULK_CHUNKS; i++)
		cr_assert_eq(cs_conn_send(c, big + (size_t)i * BULK_CHUNK, BULK_CHUNK, (uintptr_t)i + 1), 1);
}

static void expect_released_in_order(int n)
{
	cr_assert_eq(nreleased, n, "%d releases, expected %d", nreleased, n);
	for (int i = 0; i < n; i++)
		cr_expect_eq(released[i], (uintptr_t)i + 1, "release #%d was cookie %lu", i,
			     (unsigned long)released[i]);
}

Test(backend, bulk_send_to_a_slow_reader_queues_drains_and_releases_in_order)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	set_bufs(peer, SO_RCVBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	char *big = pattern(BULK);
	t_poll(loop, 0);
	queue_bulk(c, big);
	cr_expect_gt(cs_conn_queued(c), BULK / 2, "the queue holds what the kernel cannot take");

	size_t got = 0;
	uint64_t end = t_now_ms() + 30000;
	while ((got < BULK || nreleased < BULK_CHUNKS || !r.drain_calls) && t_now_ms() < end) {
		ssize_t n = peer_read_some(peer, &got, 16 * 1024); /* slow: a bit per turn */
		cr_assert(n > 0 || n == -EAGAIN, "peer read: %zd", n);
		cr_assert_leq(cs_conn_queued(c), BULK);
		t_poll(loop, n > 0 ? 0 : 1);
		if (nreleased < BULK_CHUNKS)
			cr_assert_eq(r.drain_calls, 0, "drain before the queue emptied");
	}
	cr_assert_eq(got, BULK, "peer got %zu of %d bytes", got, BULK);
	expect_released_in_order(BULK_CHUNKS);
	cr_expect_eq(r.drain_calls, 1);
	cr_expect_eq(r.queued_at_drain, 0);
	cr_expect_eq(cs_conn_queued(c), 0);
	cr_expect_eq(cs_conn_error(c), 0);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.bytes_out, BULK);
	close(peer);
	free(big);
}

Test(backend, send_to_a_reset_peer_fails_releases_and_drains)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	cr_assert_eq(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(peer);
	char *big = pattern(BULK);
	t_poll_for(loop, 10);
	int k = 0;
	for (; k < BULK_CHUNKS; k++) {
		int e = cs_conn_send(c, big + (size_t)k * BULK_CHUNK, BULK_CHUNK, (uintptr_t)k + 1);
		if (e < 0)
			break; /* the error was already known */
		cr_assert_eq(e, 1);
	}
	cr_assert_gt(k, 0);
	cr_assert(T_POLL_UNTIL(loop, nreleased == k, T_DEADLINE_MS), "%d of %d released", nreleased, k);
	expect_released_in_order(k);
	cr_expect_lt(cs_conn_error(c), 0, "sticky error after a failed send");
	cr_expect_geq(r.drain_calls, 1, "the owner hears of the failure through drain");
	cr_expect_eq(cs_conn_send(c, "x", 1, 99), cs_conn_error(c), "later sends fail at once");
	free(big);
}

/* A proxy refills the queue from drain: each refill goes out after the
 * bytes before it. */
static const char *refill_src;
static int refills_left, refill_next;

static void refill(cs_conn *c)
{
	if (refills_left == 0)
		return;
	refills_left--;
	int i = refill_next++;
	cr_assert_eq(cs_conn_send(c, refill_src + (size_t)i * BULK_CHUNK, BULK_CHUNK, (uintptr_t)i + 1), 1);
}

Test(backend, sends_queued_from_the_drain_callback_keep_order)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	char *big = pattern(BULK);
	refill_src = big;
	refill_next = 0;
	refills_left = BULK_CHUNKS;
	drain_hook = refill;
	refill(c); /* the first chunk; each drain sends the next */

	size_t got = 0;
	uint64_t end = t_now_ms() + 30000;
	while (got < BULK && t_now_ms() < end) {
		ssize_t n = peer_read_some(peer, &got, 64 * 1024);
		cr_assert(n > 0 || n == -EAGAIN, "peer read: %zd", n);
		t_poll(loop, n > 0 ? 0 : 1);
	}
	cr_assert_eq(got, BULK, "peer got %zu of %d bytes", got, BULK);
	cr_assert(T_POLL_UNTIL(loop, nreleased == BULK_CHUNKS, T_DEADLINE_MS));
	expect_released_in_order(BULK_CHUNKS);
	cr_expect_eq(r.drain_calls, BULK_CHUNKS);
	close(peer);
	free(big);
}

Test(backend, half_closed_peer_can_still_be_sent_to)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	shutdown(peer, SHUT_WR);
	char buf[CS_RECV_CHUNK];
	cr_assert_eq(recv_next(c, buf), 0);
	cr_assert_eq(cs_conn_send(c, "after", 5, 1), 1);
	cr_assert(T_POLL_UNTIL(loop, nreleased == 1, T_DEADLINE_MS));
	cr_expect_eq(cs_conn_error(c), 0);
	cr_assert_eq(read(peer, buf, sizeof(buf)), 5);
	cr_expect_eq(memcmp(buf, "after", 5), 0);
	close(peer);
}

Test(backend, shutdown_write_sends_fin_after_the_queued_bytes_and_keeps_receiving)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	set_bufs(peer, SO_RCVBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	char *big = pattern(BULK);
	t_poll(loop, 0);
	queue_bulk(c, big);
	cr_assert_eq(cs_conn_shutdown_write(c), 0);

	size_t got = peer_read_until_fin(peer);
	cr_expect_eq(got, BULK, "FIN after %zu of %d bytes", got, BULK);
	write_all(peer, "reply");
	char buf[CS_RECV_CHUNK];
	cr_assert_eq(recv_next(c, buf), 5, "receiving stopped with the FIN");
	cr_expect_eq(memcmp(buf, "reply", 5), 0);
	close(peer);
	free(big);
}

Test(backend, try_send_hands_bytes_to_the_kernel_only_when_the_queue_is_idle)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	cr_expect_eq(cs_conn_try_send(c, "now", 3), 3);
	static char big[1 << 20];
	cr_assert_eq(cs_conn_send(c, big, sizeof(big), 1), 1);
	if (nreleased == 0)
		cr_expect_eq(cs_conn_try_send(c, "late", 4), 0, "try_send jumped the queue");
	char buf[8];
	cr_assert_eq(read(sv[1], buf, 3), 3);
	cr_expect_eq(memcmp(buf, "now", 3), 0);
	close(sv[1]);
}

/* ---- connect ------------------------------------------------------------ */

/* Start a connect of a fresh non-blocking socket under the loop; returns
 * once it succeeded or failed, with the error in *err. */
static cs_conn *connect_to(const struct sockaddr_in *addr, struct crec *r, int *err)
{
	cs_conn *c = open_conn(tcp_socket(), r);
	int e = cs_conn_connect(c, (const struct sockaddr *)addr, sizeof(*addr));
	if (e == -EINPROGRESS) {
		cr_assert(T_POLL_UNTIL(loop, r->connect_calls == 1, T_DEADLINE_MS), "no connect callback");
		e = r->connect_err;
	} else {
		t_poll_for(loop, 20);
		cr_expect_eq(r->connect_calls, 0, "callback after an immediate answer");
	}
	*err = e;
	return c;
}

Test(backend, connect_to_a_listener_succeeds)
{
	struct sockaddr_in addr;
	int l = tcp_bound(&addr, 4);
	struct crec r;
	int err;
	cs_conn *c = connect_to(&addr, &r, &err);
	cr_assert_eq(err, 0, "connect: %s", strerror(-err));
	int server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(server, 0);
	cr_assert_eq(cs_conn_send(c, "hi", 2, 1), 1);
	cr_assert(T_POLL_UNTIL(loop, nreleased == 1, T_DEADLINE_MS));
	char buf[4];
	cr_assert_eq(read(server, buf, sizeof(buf)), 2);
	cr_expect_eq(memcmp(buf, "hi", 2), 0);
	close(server);
	close(l);
}

Test(backend, connect_to_a_closed_port_is_refused)
{
	struct sockaddr_in addr;
	int holder = tcp_bound(&addr, 0); /* bound, not listening: keeps the port ours */
	struct crec r;
	int err;
	connect_to(&addr, &r, &err);
	cr_expect_eq(err, -ECONNREFUSED, "got %d (%s)", err, strerror(-err));
	close(holder);
}

Test(backend, bytes_sent_while_connecting_go_out_after_connect)
{
	struct sockaddr_in addr;
	int l = tcp_bound(&addr, 4);
	struct crec r;
	cs_conn *c = open_conn(tcp_socket(), &r);
	int e = cs_conn_connect(c, (const struct sockaddr *)&addr, sizeof(addr));
	cr_assert(e == 0 || e == -EINPROGRESS, "connect: %s", strerror(-e));
	cr_assert_eq(cs_conn_send(c, "early", 5, 5), 1);
	cr_assert(T_POLL_UNTIL(loop, nreleased == 1, T_DEADLINE_MS));
	cr_expect_eq(cs_conn_error(c), 0);
	int server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(server, 0);
	char buf[8];
	cr_assert_eq(read(server, buf, sizeof(buf)), 5);
	cr_expect_eq(memcmp(buf, "early", 5), 0);
	close(server);
	close(l);
}

/* ---- close -------------------------------------------------------------- */

Test(backend, graceful_close_right_after_connect_still_delivers_the_bytes)
{
	struct sockaddr_in addr;
	int l = tcp_bound(&addr, 4);
	struct crec r;
	cs_conn *c = open_conn(tcp_socket(), &r);
	int e = cs_conn_connect(c, (const struct sockaddr *)&addr, sizeof(addr));
	cr_assert(e == 0 || e == -EINPROGRESS, "connect: %s", strerror(-e));
	cr_assert_eq(cs_conn_send(c, "hello", 5, 1), 1);
	close_conn(c, &r, true);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS), "still lingering");
	cr_expect_eq(nreleased, 1);
	int server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(server, 0);
	char buf[16];
	cr_assert_eq(read(server, buf, sizeof(buf)), 5);
	cr_expect_eq(memcmp(buf, "hello", 5), 0);
	cr_expect_eq(read(server, buf, sizeof(buf)), 0, "FIN after the bytes");
	close(server);
	close(l);
}

Test(backend, graceful_close_flushes_the_queue_before_fin)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	set_bufs(peer, SO_RCVBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	char *big = pattern(BULK);
	t_poll(loop, 0);
	queue_bulk(c, big);
	cr_assert_gt(cs_conn_queued(c), 0);
	close_conn(c, &r, true);

	size_t got = peer_read_until_fin(peer);
	cr_expect_eq(got, BULK, "peer got %zu of %d bytes before FIN", got, BULK);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS));
	expect_released_in_order(BULK_CHUNKS);
	cr_expect_eq(r.drain_calls, 0);
	close(peer);
	free(big);
}

Test(backend, graceful_close_of_an_idle_conn_closes_at_once)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec r;
	cs_conn *c = open_conn(sv[0], &r);
	close_conn(c, &r, true);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, 1000));
	char b;
	cr_expect_eq(read(sv[1], &b, 1), 0);
	close(sv[1]);
}

Test(backend, abrupt_close_drops_the_queue_and_releases_everything)
{
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	set_bufs(peer, SO_RCVBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	char *big = pattern(BULK);
	t_poll(loop, 0);
	queue_bulk(c, big);
	t_poll_for(loop, 20);
	close_conn(c, &r, false);
	cr_assert(T_POLL_UNTIL(loop, nreleased == BULK_CHUNKS && conns_in_use() == 0, T_DEADLINE_MS),
		  "%d released, %u conns", nreleased, conns_in_use());
	expect_released_in_order(BULK_CHUNKS);

	size_t got = 0;
	ssize_t n = 1;
	uint64_t end = t_now_ms() + T_DEADLINE_MS;
	while (n != 0 && n != -ECONNRESET && t_now_ms() < end) {
		n = peer_read_some(peer, &got, 64 * 1024);
		if (n == -EAGAIN) {
			struct pollfd pfd = {.fd = peer, .events = POLLIN};
			poll(&pfd, 1, 10);
		}
	}
	cr_expect(n == 0 || n == -ECONNRESET, "peer saw neither FIN nor RST (%zd)", n);
	cr_expect_lt(got, BULK, "everything arrived although the close was not graceful");
	cr_expect_eq(r.drain_calls, 0);
	close(peer);
	free(big);
}

Test(backend, graceful_close_gives_up_after_linger_ms)
{
	cs_loop_destroy(loop);
	struct cs_loop_config cfg = {.linger_ms = 100};
	loop = t_loop_create(&cfg, &ops, NULL);
	int ours, peer;
	tcp_pair(&ours, &peer);
	set_bufs(ours, SO_SNDBUF, 32 * 1024);
	set_bufs(peer, SO_RCVBUF, 32 * 1024);
	struct crec r;
	cs_conn *c = open_conn(ours, &r);
	char *big = pattern(BULK);
	t_poll(loop, 0);
	queue_bulk(c, big);
	uint64_t t0 = t_now_ms();
	close_conn(c, &r, true); /* the peer never reads */
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS), "still lingering");
	uint64_t took = t_now_ms() - t0;
	cr_expect_geq(took, 90, "gave up after %llu ms", (unsigned long long)took);
	cr_expect_lt(took, 3000, "gave up after %llu ms", (unsigned long long)took);
	cr_assert(T_POLL_UNTIL(loop, nreleased == BULK_CHUNKS, T_DEADLINE_MS));
	expect_released_in_order(BULK_CHUNKS);
	close(peer);
	free(big);
}

/* ---- stale completions -------------------------------------------------- */

Test(backend, completions_for_a_closed_conn_never_reach_the_slots_next_owner)
{
	cs_loop_destroy(loop);
	struct cs_loop_config cfg = {.max_conns = 1}; /* the slot must be reused */
	loop = t_loop_create(&cfg, &ops, NULL);

	int a_ours, a_peer;
	tcp_pair(&a_ours, &a_peer);
	set_bufs(a_ours, SO_SNDBUF, 32 * 1024);
	set_bufs(a_peer, SO_RCVBUF, 32 * 1024);
	struct crec ra;
	cs_conn *a = open_conn(a_ours, &ra);
	uint32_t id = cs_conn_id(a);
	const char *data;
	char *big = pattern(BULK);
	t_poll(loop, 0);
	cr_assert_eq(cs_conn_recv(a, &data), -EAGAIN); /* a receive in flight */
	queue_bulk(a, big);                            /* and a send */
	t_poll(loop, 0);
	close_conn(a, &ra, false);
	send(a_peer, "for a", 5, MSG_NOSIGNAL); /* lands on the closed conn, if anywhere */
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS));
	cr_expect_eq(nreleased, BULK_CHUNKS);

	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct crec rb;
	cs_conn *b = open_conn(sv[0], &rb);
	cr_assert_eq(cs_conn_id(b), id);
	send(a_peer, "for a", 5, MSG_NOSIGNAL);
	t_poll_for(loop, 50);
	cr_expect_eq(rb.recv_calls + rb.drain_calls + rb.connect_calls + rb.accept_calls, 0,
		     "the new owner got a callback it never asked for");

	write_all(sv[1], "for b");
	char buf[CS_RECV_CHUNK];
	ssize_t n = recv_next(b, buf);
	cr_assert_eq(n, 5, "got %zd", n);
	cr_expect_eq(memcmp(buf, "for b", 5), 0);
	cr_expect_leq(rb.recv_calls, 1);
	cr_expect_eq(nreleased, BULK_CHUNKS, "a release came twice");
	close(sv[1]);
	close(a_peer);
	free(big);
}

/* Two conns become readable in the same poll; the first callback closes
 * the other one and hands its slot to a new conn at once. */
static cs_conn *pair_conn[2], *newcomer;
static struct crec pair_rec[2], newcomer_rec;
static int newcomer_peer;

static void close_the_other(cs_conn *c)
{
	recv_hook = NULL;
	int other = c == pair_conn[0] ? 1 : 0;
	close_conn(pair_conn[other], &pair_rec[other], false);
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	newcomer = open_conn(sv[0], &newcomer_rec);
	newcomer_peer = sv[1];
	const char *data;
	cr_assert_eq(cs_conn_recv(newcomer, &data), -EAGAIN, "the newcomer's peer sent nothing");
}

Test(backend, conn_closed_inside_a_callback_gets_nothing_more_in_that_poll)
{
	int peers[2];
	const char *data;
	for (int i = 0; i < 2; i++) {
		int sv[2];
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		pair_conn[i] = open_conn(sv[0], &pair_rec[i]);
		peers[i] = sv[1];
		cr_assert_eq(cs_conn_recv(pair_conn[i], &data), -EAGAIN);
	}
	t_poll(loop, 0);
	recv_hook = close_the_other;
	write_all(peers[0], "zero");
	write_all(peers[1], "one");
	cr_assert(T_POLL_UNTIL(loop, newcomer != NULL, T_DEADLINE_MS));
	t_poll_for(loop, 50);
	cr_expect_eq(pair_rec[0].recv_calls + pair_rec[1].recv_calls, 1);
	cr_expect_eq(newcomer_rec.recv_calls, 0, "the newcomer got someone else's data");
	write_all(newcomer_peer, "mine");
	cr_assert(T_POLL_UNTIL(loop, newcomer_rec.recv_calls == 1, T_DEADLINE_MS));
	cr_assert_eq(newcomer_rec.last_n, 4);
	cr_expect_eq(memcmp(newcomer_rec.last, "mine", 4), 0);
	close(peers[0]);
	close(peers[1]);
	close(newcomer_peer);
}

/* ---- readiness of datagram sockets -------------------------------------- */

/* Two UDP sockets on loopback connected to each other; *a is non-blocking. */
static void udp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in sb = sa;
	socklen_t sl = sizeof(sa);
	*a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	*b = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert(*a >= 0 && *b >= 0);
	cr_assert_eq(bind(*a, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(bind(*b, (struct sockaddr *)&sb, sizeof(sb)), 0);
	cr_assert_eq(getsockname(*a, (struct sockaddr *)&sa, &sl), 0);
	sl = sizeof(sb);
	cr_assert_eq(getsockname(*b, (struct sockaddr *)&sb, &sl), 0);
	cr_assert_eq(connect(*a, (struct sockaddr *)&sb, sizeof(sb)), 0);
	cr_assert_eq(connect(*b, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

Test(backend, poll_readable_answers_once_per_request_for_each_datagram)
{
	int a, b;
	udp_pair(&a, &b);
	struct crec r = {0};
	cs_conn *c;
	cr_assert_eq(cs_conn_open(loop, a, &r, &c), 0);
	char buf[64];
	cr_assert_eq(recv(a, buf, sizeof(buf), 0), -1, "nothing sent yet");
	cr_assert_eq(cs_conn_poll_readable(c), 0);
	for (int i = 0; i < 5; i++)
		t_poll(loop, 10);
	cr_expect_eq(r.readable_calls, 0, "readable before anything arrived");
	for (int round = 1; round <= 3; round++) {
		cr_assert_eq(send(b, "ping", 4, 0), 4);
		for (int i = 0; i < 100 && r.readable_calls < round; i++)
			t_poll(loop, 10);
		cr_assert_eq(r.readable_calls, round, "round %d", round);
		cr_assert_eq(recv(a, buf, sizeof(buf), 0), 4);
		cr_assert_eq(recv(a, buf, sizeof(buf), 0), -1);
		cr_assert_eq(cs_conn_poll_readable(c), 0);
	}
	/* Withdrawn: a datagram arrives and nobody is told. */
	cs_conn_poll_cancel(c);
	cr_assert_eq(send(b, "late", 4, 0), 4);
	for (int i = 0; i < 10; i++)
		t_poll(loop, 10);
	cr_expect_eq(r.readable_calls, 3, "readable after cs_conn_poll_cancel()");
	r.closed = true;
	cs_conn_close(c, false);
	for (int i = 0; i < 5; i++)
		t_poll(loop, 10);
	close(b);
}
