/*
 * test_listeners.c - daemon/listeners.c, rule by rule (listeners.h):
 * sockets kept per (type, address, worker slot) with SO_REUSEPORT, port 0
 * and slot 0 never kept, UDP like TCP but not listening, generations and
 * cs_listeners_retire, cs_listeners_drop_slot, the sockets systemd passes
 * (adopted by port and address, by name, by type; SO_REUSEPORT siblings or
 * one shared socket for the other slots; sockets of the wrong kind closed;
 * the environment cleared), cs_listeners_open_local, the warning for
 * unadopted sockets, and no descriptor left behind by destroy.
 *
 * Socket activation puts the sockets at fd 3, 4, ... (SD_LISTEN_FDS_START),
 * where Criterion's own descriptors live in the test process (its event
 * loop's eventfd among them). Those tests therefore run their body in a
 * forked child, which may clobber fds 3.. at will: it reports the first
 * failed check through a pipe and exits, and the parent turns that into
 * the test's failure. CHECK* work in both places.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "listeners.h"

#define CHILD_DEADLINE_MS 20000

/* ---- checks that work in the test process and in a forked child ---- */

static int report_fd = -1; /* in a child: where the first failure goes */

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void fail_at(int line, const char *fmt, ...)
{
	char msg[1024];
	int n = snprintf(msg, sizeof(msg), "line %d: ", line);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (report_fd < 0) {
		cr_assert_fail("%s", msg);
		abort(); /* not reached */
	}
	ssize_t w = write(report_fd, msg, strlen(msg));
	(void)w;
	_exit(1);
}

#define CHECK(c)                                                                                             \
	do {                                                                                                 \
		if (!(c))                                                                                    \
			fail_at(__LINE__, "%s (errno: %s)", #c, strerror(errno));                            \
	} while (0)
#define CHECK_EQ(a, b)                                                                                       \
	do {                                                                                                 \
		long long a_ = (a), b_ = (b);                                                                \
		if (a_ != b_)                                                                                \
			fail_at(__LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);                         \
	} while (0)
#define CHECK_NE(a, b)                                                                                       \
	do {                                                                                                 \
		long long a_ = (a), b_ = (b);                                                                \
		if (a_ == b_)                                                                                \
			fail_at(__LINE__, "%s != %s: both %lld", #a, #b, a_);                                \
	} while (0)
#define CHECK_HAS(hay, needle)                                                                               \
	do {                                                                                                 \
		if (!strstr((hay), (needle)))                                                                \
			fail_at(__LINE__, "no \"%s\" in: %s", (needle), (hay));                              \
	} while (0)
#define CHECK_LACKS(hay, needle)                                                                             \
	do {                                                                                                 \
		if (strstr((hay), (needle)))                                                                 \
			fail_at(__LINE__, "unexpected \"%s\" in: %s", (needle), (hay));                      \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run body in a forked child and fail the test with the child's report
 * unless it exits 0 within CHILD_DEADLINE_MS. */
static void in_child(void (*body)(void))
{
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(p[0]);
		/* far above the fds the body places systemd's sockets at */
		report_fd = fcntl(p[1], F_DUPFD_CLOEXEC, 100);
		close(p[1]);
		if (report_fd < 0)
			_exit(2);
		body();
		_exit(0);
	}
	close(p[1]);
	char msg[1024] = "";
	size_t len = 0;
	bool timed_out = false;
	uint64_t deadline = now_ms() + CHILD_DEADLINE_MS;
	for (;;) {
		uint64_t t = now_ms();
		if (t >= deadline) {
			timed_out = true;
			break;
		}
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		int r = poll(&pf, 1, (int)(deadline - t));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(p[0], msg + len, sizeof(msg) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(msg) - 1)
			break;
	}
	msg[len] = '\0';
	if (timed_out)
		kill(pid, SIGKILL);
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	close(p[0]);
	cr_assert_not(timed_out, "the child did not finish within %d ms", CHILD_DEADLINE_MS);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s (wait status 0x%x)",
		  len ? msg : "no report", st);
}

/* ---- addresses and socket facts ---- */

static socklen_t mkaddr(struct sockaddr_storage *ss, const char *ip, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		CHECK_EQ(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	CHECK_EQ(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	return sizeof(*s4);
}

/* cs_listeners_get for (type, ip:port), any_addr and fdname as bind's
 * options would set them. */
static int get(cs_listeners *ls, int type, const char *ip, int port, bool any_addr, const char *fdname,
	       unsigned slot, unsigned gen, bool *kept)
{
	struct sockaddr_storage ss;
	socklen_t len = mkaddr(&ss, ip, port);
	struct cs_listen_req req = {.type = type,
				    .addr = (struct sockaddr *)&ss,
				    .addrlen = len,
				    .any_addr = any_addr,
				    .fdname = fdname};
	*kept = true; /* the module must clear it for sockets the caller owns */
	return cs_listeners_get(ls, &req, slot, gen, kept);
}

static int tcp(cs_listeners *ls, const char *ip, int port, unsigned slot, unsigned gen, bool *kept)
{
	return get(ls, SOCK_STREAM, ip, port, false, NULL, slot, gen, kept);
}

static int open_local(cs_listeners *ls, int type, const char *ip, int port, bool any_addr, bool *shared)
{
	struct sockaddr_storage ss;
	socklen_t len = mkaddr(&ss, ip, port);
	struct cs_listen_req req = {
	    .type = type, .addr = (struct sockaddr *)&ss, .addrlen = len, .any_addr = any_addr};
	*shared = true;
	return cs_listeners_open_local(ls, &req, shared);
}

static int sockopt(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);
	CHECK_EQ(getsockopt(fd, SOL_SOCKET, opt, &v, &l), 0);
	return v;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&ss, &l), 0);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* "ip:port" of fd's local address (IPv4 only; enough here). */
static const char *bound_at(int fd)
{
	static char buf[4][64];
	static unsigned next;
	char *b = buf[next++ % 4];
	struct sockaddr_in sin;
	socklen_t l = sizeof(sin);
	char host[INET_ADDRSTRLEN] = "?";
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&sin, &l), 0);
	inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
	snprintf(b, 64, "%s:%d", host, ntohs(sin.sin_port));
	return b;
}

static bool same_socket(int a, int b)
{
	struct stat sa, sb;
	CHECK_EQ(fstat(a, &sa), 0);
	CHECK_EQ(fstat(b, &sb), 0);
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A socket of type bound to ip:port (listening for TCP); options as
 * systemd would have set them. Returns the fd. */
static int make_sock(int type, const char *ip, int port, bool listening, bool reuseport)
{
	struct sockaddr_storage ss;
	socklen_t len = mkaddr(&ss, ip, port);
	int fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	int one = 1;
	if (ss.ss_family == AF_INET6)
		CHECK_EQ(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), 0);
	if (reuseport)
		CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&ss, len), 0);
	if (listening)
		CHECK_EQ(listen(fd, 16), 0);
	return fd;
}

/* Whether a plain socket (no SO_REUSEADDR/SO_REUSEPORT) can take
 * ip:port now: false while another socket holds it. */
static bool port_bindable(int type, const char *ip, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = mkaddr(&ss, ip, port);
	int fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	bool ok = bind(fd, (struct sockaddr *)&ss, len) == 0 && (type != SOCK_STREAM || listen(fd, 1) == 0);
	close(fd);
	return ok;
}

/* A port on ip that is free for both TCP and UDP right now. */
static int free_port_on(const char *ip)
{
	for (int i = 0; i < 50; i++) {
		int fd = make_sock(SOCK_STREAM, ip, 0, false, false);
		int port = bound_port(fd);
		close(fd);
		if (port_bindable(SOCK_DGRAM, ip, port) && port_bindable(SOCK_STREAM, ip, port))
			return port;
	}
	fail_at(__LINE__, "no free port on %s in 50 tries", ip);
}

static int free_port(void)
{
	return free_port_on("127.0.0.1");
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	CHECK(d != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

/* stderr (log.c's records) goes to a temporary file between
 * capture_start and capture_end, which returns what was written. */
static int saved_stderr = -1, capture_fd = -1;

static void capture_start(void)
{
	char path[] = "/tmp/cs-listeners-log-XXXXXX";
	capture_fd = mkstemp(path);
	CHECK(capture_fd >= 0);
	unlink(path);
	saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 50);
	CHECK(saved_stderr >= 0);
	CHECK_EQ(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

static const char *capture_end(void)
{
	static char buf[16384];
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	ssize_t n = pread(capture_fd, buf, sizeof(buf) - 1, 0);
	close(capture_fd);
	CHECK(n >= 0);
	buf[n] = '\0';
	return buf;
}

static unsigned count_of(const char *hay, const char *needle)
{
	unsigned n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Put fds[0..n) at SD_LISTEN_FDS_START.. and describe them in LISTEN_*
 * as systemd does for this process (names NULL: no LISTEN_FDNAMES). Only
 * in a child. */
static void pass_fds(const int *fds, int n, const char *names)
{
	int high[8];
	CHECK(n <= 8);
	for (int i = 0; i < n; i++) {
		high[i] = fcntl(fds[i], F_DUPFD, 60);
		CHECK(high[i] >= 0);
		close(fds[i]);
	}
	for (int i = 0; i < n; i++) {
		CHECK_EQ(dup2(high[i], 3 + i), 3 + i);
		close(high[i]);
	}
	char v[32];
	snprintf(v, sizeof(v), "%d", (int)getpid());
	CHECK_EQ(setenv("LISTEN_PID", v, 1), 0);
	snprintf(v, sizeof(v), "%d", n);
	CHECK_EQ(setenv("LISTEN_FDS", v, 1), 0);
	if (names)
		CHECK_EQ(setenv("LISTEN_FDNAMES", names, 1), 0);
	else
		unsetenv("LISTEN_FDNAMES");
}

static void setup(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

TestSuite(listeners, .init = setup, .timeout = 60);

/* ---- without systemd ---- */

Test(listeners, create_without_systemd_is_empty)
{
	int before = count_fds();
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	CHECK(ls != NULL);
	cs_listeners_warn_unadopted(ls);
	const char *log = capture_end();
	CHECK_EQ(log[0], '\0');
	CHECK_EQ(count_fds(), before);
	cs_listeners_destroy(ls);
	CHECK_EQ(count_fds(), before);
	cs_listeners_destroy(NULL);
}

Test(listeners, slot_socket_kept_with_reuseport)
{
	int port = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int fd = tcp(ls, "127.0.0.1", port, 1, 1, &kept);
	CHECK(fd >= 0);
	CHECK(kept);
	CHECK_EQ(sockopt(fd, SO_TYPE), SOCK_STREAM);
	CHECK_EQ(sockopt(fd, SO_ACCEPTCONN), 1);
	CHECK_EQ(sockopt(fd, SO_REUSEPORT), 1);
	CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%d", port);
	CHECK(!strcmp(bound_at(fd), want));
	/* the same (address, slot) again: the same socket, still lent */
	int again = tcp(ls, "127.0.0.1", port, 1, 1, &kept);
	CHECK_EQ(again, fd);
	CHECK(kept);
	/* and a later generation asking for it gets it too */
	again = tcp(ls, "127.0.0.1", port, 1, 2, &kept);
	CHECK_EQ(again, fd);
	CHECK(kept);
	cs_listeners_destroy(ls);
	CHECK(fd_closed(fd));
}

Test(listeners, other_slot_gets_a_sibling)
{
	int port = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int a = tcp(ls, "127.0.0.1", port, 1, 1, &kept);
	CHECK(a >= 0);
	int b = tcp(ls, "127.0.0.1", port, 2, 1, &kept);
	CHECK(b >= 0);
	CHECK(kept);
	CHECK_NE(a, b);
	CHECK(!same_socket(a, b));
	CHECK_EQ(bound_port(b), port);
	CHECK_EQ(sockopt(a, SO_ACCEPTCONN), 1);
	CHECK_EQ(sockopt(b, SO_ACCEPTCONN), 1);
	CHECK_EQ(sockopt(b, SO_REUSEPORT), 1);
	CHECK_EQ(tcp(ls, "127.0.0.1", port, 2, 1, &kept), b);
	CHECK_EQ(tcp(ls, "127.0.0.1", port, 1, 1, &kept), a);
	int c = tcp(ls, "127.0.0.1", port, 3, 1, &kept);
	CHECK(c >= 0 && c != a && c != b);
	/* nothing else may take the port while they listen */
	CHECK(!port_bindable(SOCK_STREAM, "127.0.0.1", port));
	cs_listeners_destroy(ls);
	CHECK(fd_closed(a));
	CHECK(fd_closed(b));
	CHECK(fd_closed(c));
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", port));
}

/* The key is the whole address: another host address, or IPv6, is
 * another socket for the same slot. */
Test(listeners, kept_per_address)
{
	int port = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int a = tcp(ls, "127.0.0.1", port, 1, 1, &kept);
	int b = tcp(ls, "127.0.0.2", port, 1, 1, &kept);
	CHECK(a >= 0 && b >= 0);
	CHECK_NE(a, b);
	CHECK(!strncmp(bound_at(b), "127.0.0.2:", 10));
	int p2 = free_port();
	int c = tcp(ls, "127.0.0.1", p2, 1, 1, &kept);
	CHECK(c >= 0 && c != a && c != b);
	CHECK_EQ(bound_port(c), p2);
	int v6 = tcp(ls, "::1", port, 1, 1, &kept);
	if (v6 != -EADDRNOTAVAIL && v6 != -EAFNOSUPPORT) { /* else no IPv6 here */
		CHECK(v6 >= 0);
		CHECK(kept);
		CHECK(v6 != a && v6 != b && v6 != c);
		CHECK_EQ(tcp(ls, "::1", port, 1, 1, &kept), v6);
	}
	cs_listeners_destroy(ls);
}

Test(listeners, port_zero_is_fresh_and_not_kept)
{
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int a = tcp(ls, "127.0.0.1", 0, 1, 1, &kept);
	CHECK(a >= 0);
	CHECK(!kept);
	CHECK_EQ(sockopt(a, SO_ACCEPTCONN), 1);
	int b = tcp(ls, "127.0.0.1", 0, 1, 1, &kept);
	CHECK(b >= 0);
	CHECK(!kept);
	CHECK_NE(a, b);
	CHECK_NE(bound_port(a), bound_port(b));
	CHECK_NE(bound_port(a), 0);
	int u = get(ls, SOCK_DGRAM, "127.0.0.1", 0, false, NULL, 2, 1, &kept);
	CHECK(u >= 0);
	CHECK(!kept);
	/* the caller owns them: destroy leaves them open, retire too */
	cs_listeners_retire(ls, 5, 0);
	cs_listeners_destroy(ls);
	CHECK(fd_open(a));
	CHECK(fd_open(b));
	CHECK(fd_open(u));
	close(a);
	close(b);
	close(u);
}

Test(listeners, slot_zero_binds_exclusively_and_keeps_nothing)
{
	int port = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int a = tcp(ls, "127.0.0.1", port, 0, 0, &kept);
	CHECK(a >= 0);
	CHECK(!kept);
	CHECK_EQ(sockopt(a, SO_ACCEPTCONN), 1);
	CHECK_EQ(sockopt(a, SO_REUSEPORT), 0);
	CHECK(fcntl(a, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(a, F_GETFD) & FD_CLOEXEC);
	/* a second one cannot share the port, nor can a kept slot socket */
	CHECK_EQ(tcp(ls, "127.0.0.1", port, 0, 0, &kept), -EADDRINUSE);
	CHECK_EQ(tcp(ls, "127.0.0.1", port, 1, 1, &kept), -EADDRINUSE);
	int u = get(ls, SOCK_DGRAM, "127.0.0.1", port, false, NULL, 0, 0, &kept);
	CHECK(u >= 0);
	CHECK(!kept);
	CHECK_EQ(sockopt(u, SO_REUSEPORT), 0);
	cs_listeners_destroy(ls);
	CHECK(fd_open(a));
	CHECK(fd_open(u));
	close(a);
	close(u);
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", port));
}

Test(listeners, udp_kept_per_slot_not_listening)
{
	int port = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int u1 = get(ls, SOCK_DGRAM, "127.0.0.1", port, false, NULL, 1, 1, &kept);
	CHECK(u1 >= 0);
	CHECK(kept);
	CHECK_EQ(sockopt(u1, SO_TYPE), SOCK_DGRAM);
	CHECK_EQ(sockopt(u1, SO_ACCEPTCONN), 0);
	CHECK_EQ(sockopt(u1, SO_REUSEPORT), 1);
	CHECK_EQ(bound_port(u1), port);
	CHECK_EQ(get(ls, SOCK_DGRAM, "127.0.0.1", port, false, NULL, 1, 1, &kept), u1);
	CHECK(kept);
	int u2 = get(ls, SOCK_DGRAM, "127.0.0.1", port, false, NULL, 2, 1, &kept);
	CHECK(u2 >= 0);
	CHECK(kept);
	CHECK_NE(u1, u2);
	CHECK_EQ(bound_port(u2), port);
	/* TCP on the same port and slot is another socket */
	int t1 = tcp(ls, "127.0.0.1", port, 1, 1, &kept);
	CHECK(t1 >= 0);
	CHECK(t1 != u1 && t1 != u2);
	CHECK_EQ(sockopt(t1, SO_TYPE), SOCK_STREAM);
	CHECK(!port_bindable(SOCK_DGRAM, "127.0.0.1", port));
	cs_listeners_destroy(ls);
	CHECK(fd_closed(u1));
	CHECK(fd_closed(u2));
	CHECK(fd_closed(t1));
	CHECK(port_bindable(SOCK_DGRAM, "127.0.0.1", port));
}

Test(listeners, retire_by_generation_and_slots)
{
	int pa = free_port(), pb = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	/* generation 1: slots 1 and 2 on A, slot 1 on B, UDP on B */
	int a1 = tcp(ls, "127.0.0.1", pa, 1, 1, &kept);
	int a2 = tcp(ls, "127.0.0.1", pa, 2, 1, &kept);
	int b1 = tcp(ls, "127.0.0.1", pb, 1, 1, &kept);
	int ub = get(ls, SOCK_DGRAM, "127.0.0.1", pb, false, NULL, 1, 1, &kept);
	CHECK(a1 >= 0 && a2 >= 0 && b1 >= 0 && ub >= 0);
	/* generation 2 only listens on A */
	CHECK_EQ(tcp(ls, "127.0.0.1", pa, 1, 2, &kept), a1);
	CHECK_EQ(tcp(ls, "127.0.0.1", pa, 2, 2, &kept), a2);
	capture_start();
	cs_listeners_retire(ls, 2, 2);
	const char *log = capture_end();
	CHECK(fd_closed(b1));
	CHECK(fd_closed(ub));
	CHECK(fd_open(a1));
	CHECK(fd_open(a2));
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", pb));
	CHECK(port_bindable(SOCK_DGRAM, "127.0.0.1", pb));
	CHECK(!port_bindable(SOCK_STREAM, "127.0.0.1", pa));
	char want[128];
	snprintf(want, sizeof(want),
		 "<6>cosockd: master: closing the listening socket 127.0.0.1:%d of worker slot 1: no longer "
		 "used\n",
		 pb);
	CHECK_EQ(count_of(log, want), 2); /* TCP and UDP */
	CHECK_EQ(count_of(log, "\n"), 2);
	/* a socket asked for by a later generation than retired stays */
	CHECK_EQ(tcp(ls, "127.0.0.1", pa, 1, 4, &kept), a1);
	CHECK_EQ(tcp(ls, "127.0.0.1", pa, 2, 4, &kept), a2);
	cs_listeners_retire(ls, 3, 2);
	CHECK(fd_open(a1));
	CHECK(fd_open(a2));
	/* a reload down to one worker: slot 2 goes, slot 1 stays */
	cs_listeners_retire(ls, 4, 1);
	CHECK(fd_closed(a2));
	CHECK(fd_open(a1));
	CHECK(!port_bindable(SOCK_STREAM, "127.0.0.1", pa));
	CHECK_EQ(tcp(ls, "127.0.0.1", pa, 1, 5, &kept), a1);
	/* nothing wanted by generation 6: all gone, the port is free */
	cs_listeners_retire(ls, 6, 4);
	CHECK(fd_closed(a1));
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", pa));
	/* and asking again binds anew */
	int again = tcp(ls, "127.0.0.1", pa, 1, 6, &kept);
	CHECK(again >= 0);
	CHECK(kept);
	CHECK_EQ(sockopt(again, SO_ACCEPTCONN), 1);
	cs_listeners_destroy(ls);
}

Test(listeners, drop_slot_closes_exactly_that_slot)
{
	int pa = free_port(), pb = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	int a1 = tcp(ls, "127.0.0.1", pa, 1, 1, &kept);
	int a2 = tcp(ls, "127.0.0.1", pa, 2, 1, &kept);
	int a3 = tcp(ls, "127.0.0.1", pa, 3, 1, &kept);
	int b2 = tcp(ls, "127.0.0.1", pb, 2, 1, &kept);
	int u2 = get(ls, SOCK_DGRAM, "127.0.0.1", pb, false, NULL, 2, 1, &kept);
	int b1 = tcp(ls, "127.0.0.1", pb, 1, 1, &kept);
	CHECK(a1 >= 0 && a2 >= 0 && a3 >= 0 && b2 >= 0 && u2 >= 0 && b1 >= 0);
	capture_start();
	cs_listeners_drop_slot(ls, 2);
	const char *log = capture_end();
	CHECK(fd_closed(a2));
	CHECK(fd_closed(b2));
	CHECK(fd_closed(u2));
	CHECK(fd_open(a1));
	CHECK(fd_open(a3));
	CHECK(fd_open(b1));
	CHECK_EQ(count_of(log, "of worker slot 2: its worker is gone\n"), 3);
	CHECK_EQ(count_of(log, "\n"), 3);
	/* the UDP port of slot 2 is free again (nothing else held UDP) */
	CHECK(port_bindable(SOCK_DGRAM, "127.0.0.1", pb));
	/* the replacement worker binds anew */
	int n2 = tcp(ls, "127.0.0.1", pa, 2, 1, &kept);
	CHECK(n2 >= 0);
	CHECK(kept);
	CHECK_EQ(sockopt(n2, SO_ACCEPTCONN), 1);
	CHECK(n2 != a1 && n2 != a3);
	/* dropping a slot with nothing kept changes nothing */
	cs_listeners_drop_slot(ls, 7);
	CHECK(fd_open(a1) && fd_open(a3) && fd_open(b1) && fd_open(n2));
	cs_listeners_destroy(ls);
}

Test(listeners, errors_are_negative_errno_and_keep_nothing)
{
	int port = free_port();
	int blocker = make_sock(SOCK_STREAM, "127.0.0.1", port, true, false);
	cs_listeners *ls = cs_listeners_create();
	int before = count_fds();
	bool kept;
	CHECK_EQ(tcp(ls, "127.0.0.1", port, 1, 1, &kept), -EADDRINUSE);
	CHECK(!kept);
	CHECK_EQ(count_fds(), before);
	close(blocker);
	before--;
	int fd = tcp(ls, "127.0.0.1", port, 1, 1, &kept);
	CHECK(fd >= 0);
	CHECK(kept);
	/* an address that is not this host's (only bound, never sent to) */
	CHECK_EQ(tcp(ls, "192.0.2.1", port, 1, 1, &kept), -EADDRNOTAVAIL);
	/* not an IP address */
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	strcpy(sun.sun_path, "/tmp/cs-listeners-no-such-socket");
	struct cs_listen_req req = {
	    .type = SOCK_STREAM, .addr = (struct sockaddr *)&sun, .addrlen = sizeof(sun)};
	CHECK_EQ(cs_listeners_get(ls, &req, 1, 1, &kept), -EAFNOSUPPORT);
	CHECK(!kept);
	bool shared;
	CHECK_EQ(cs_listeners_open_local(ls, &req, &shared), -EAFNOSUPPORT);
	CHECK_EQ(count_fds(), before + 1);
	cs_listeners_destroy(ls);
	CHECK(fd_closed(fd));
}

Test(listeners, open_local_without_systemd_binds_fresh)
{
	int port = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool shared;
	int a = open_local(ls, SOCK_STREAM, "127.0.0.1", port, false, &shared);
	CHECK(a >= 0);
	CHECK(!shared);
	CHECK_EQ(sockopt(a, SO_ACCEPTCONN), 1);
	CHECK_EQ(sockopt(a, SO_REUSEPORT), 0);
	CHECK_EQ(bound_port(a), port);
	CHECK_EQ(open_local(ls, SOCK_STREAM, "127.0.0.1", port, false, &shared), -EADDRINUSE);
	int z = open_local(ls, SOCK_STREAM, "127.0.0.1", 0, false, &shared);
	CHECK(z >= 0);
	CHECK(!shared);
	int u = open_local(ls, SOCK_DGRAM, "0.0.0.0", port, true, &shared);
	CHECK(u >= 0);
	CHECK(!shared);
	CHECK_EQ(sockopt(u, SO_TYPE), SOCK_DGRAM);
	cs_listeners_destroy(ls);
	CHECK(fd_open(a) && fd_open(z) && fd_open(u));
	close(a);
	close(z);
	close(u);
}

Test(listeners, destroy_leaves_no_fd)
{
	int before = count_fds();
	int p1 = free_port(), p2 = free_port();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	for (unsigned slot = 1; slot <= 4; slot++) {
		CHECK(tcp(ls, "127.0.0.1", p1, slot, 1, &kept) >= 0);
		CHECK(tcp(ls, "127.0.0.1", p2, slot, 1, &kept) >= 0);
		CHECK(get(ls, SOCK_DGRAM, "127.0.0.1", p2, false, NULL, slot, 1, &kept) >= 0);
	}
	/* enough entries to make the table grow more than once */
	for (unsigned slot = 5; slot <= 20; slot++)
		CHECK(tcp(ls, "127.0.0.1", p1, slot, 1, &kept) >= 0);
	CHECK_EQ(count_fds(), before + 12 + 16);
	cs_listeners_drop_slot(ls, 3);
	CHECK_EQ(count_fds(), before + 9 + 16);
	cs_listeners_destroy(ls);
	CHECK_EQ(count_fds(), before);
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", p1));
	CHECK(port_bindable(SOCK_DGRAM, "127.0.0.1", p2));
}

/* ---- systemd's sockets (each in a forked child: fds 3.. are ours) ---- */

static int P1, P2, P3; /* set in the parent before fork, free ports */

static void pick_ports(void)
{
	P1 = free_port();
	P2 = free_port();
	P3 = free_port();
	cr_assert(P1 != P2 && P2 != P3 && P1 != P3);
}

/* web = 127.0.0.1:P1, api = 127.0.0.1:P2, both listening, no SO_REUSEPORT. */
static cs_listeners *create_web_api(const char **log)
{
	int fds[2] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, false),
		      make_sock(SOCK_STREAM, "127.0.0.1", P2, true, false)};
	pass_fds(fds, 2, "web:api");
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	*log = capture_end();
	CHECK(ls != NULL);
	return ls;
}

static void body_taken_and_logged(void)
{
	const char *log;
	cs_listeners *ls = create_web_api(&log);
	char want[160];
	snprintf(want, sizeof(want), "<6>cosockd: systemd socket 3 (name web): 127.0.0.1:%d stream\n", P1);
	CHECK_HAS(log, want);
	snprintf(want, sizeof(want), "<6>cosockd: systemd socket 4 (name api): 127.0.0.1:%d stream\n", P2);
	CHECK_HAS(log, want);
	CHECK_EQ(count_of(log, "\n"), 2);
	CHECK(getenv("LISTEN_FDS") == NULL);
	CHECK(getenv("LISTEN_PID") == NULL);
	CHECK(getenv("LISTEN_FDNAMES") == NULL);
	CHECK(fcntl(3, F_GETFD) & FD_CLOEXEC);
	CHECK(fcntl(4, F_GETFD) & FD_CLOEXEC);
	/* kept until the daemon exits: retire and drop_slot leave them */
	cs_listeners_retire(ls, 100, 0);
	cs_listeners_drop_slot(ls, 0);
	cs_listeners_drop_slot(ls, 1);
	CHECK(fd_open(3) && fd_open(4));
	cs_listeners_destroy(ls);
	CHECK(fd_closed(3));
	CHECK(fd_closed(4));
}

Test(listeners, systemd_sockets_taken_logged_env_cleared)
{
	pick_ports();
	in_child(body_taken_and_logged);
}

static void body_adopt_by_port(void)
{
	const char *log;
	cs_listeners *ls = create_web_api(&log);
	bool kept;
	capture_start();
	int fd = tcp(ls, "127.0.0.1", P1, 1, 1, &kept);
	int again = tcp(ls, "127.0.0.1", P1, 1, 2, &kept);
	log = capture_end();
	CHECK_EQ(fd, 3);
	CHECK_EQ(again, 3);
	CHECK(kept);
	char want[160];
	snprintf(want, sizeof(want),
		 "<5>cosockd: bind %d: adopted systemd socket 3 (name web) 127.0.0.1:%d\n", P1, P1);
	CHECK_HAS(log, want);
	CHECK_EQ(count_of(log, "\n"), 1); /* logged once */
	/* no intf: any address on the port */
	CHECK_EQ(get(ls, SOCK_STREAM, "0.0.0.0", P2, true, NULL, 1, 1, &kept), 4);
	CHECK(kept);
	/* no intf, whatever address the request carries */
	CHECK_EQ(get(ls, SOCK_STREAM, "127.0.0.2", P2, true, NULL, 2, 1, &kept), 4);
	/* intf given as the wildcard: matches too */
	CHECK_EQ(get(ls, SOCK_STREAM, "0.0.0.0", P1, false, NULL, 1, 1, &kept), 3);
	/* another specific address on the port: not systemd's, bound here */
	int other = tcp(ls, "127.0.0.2", P1, 1, 1, &kept);
	CHECK(other >= 0);
	CHECK(other != 3 && other != 4);
	CHECK(kept);
	snprintf(want, sizeof(want), "127.0.0.2:%d", P1);
	CHECK(!strcmp(bound_at(other), want));
	/* another port: bound here */
	int p3 = tcp(ls, "127.0.0.1", P3, 1, 1, &kept);
	CHECK(p3 >= 0 && p3 != 3 && p3 != 4);
	CHECK_EQ(bound_port(p3), P3);
	/* the single process adopts too (slot 0) */
	CHECK_EQ(tcp(ls, "127.0.0.1", P1, 0, 0, &kept), 3);
	CHECK(kept);
	cs_listeners_destroy(ls);
	CHECK(fd_closed(3) && fd_closed(4) && fd_closed(other) && fd_closed(p3));
}

Test(listeners, systemd_adopted_by_port_and_address)
{
	pick_ports();
	in_child(body_adopt_by_port);
}

/* systemd's socket on the wildcard address: a specific intf adopts it. */
static void body_wildcard_systemd(void)
{
	int fds[2] = {make_sock(SOCK_STREAM, "0.0.0.0", P1, true, false),
		      make_sock(SOCK_STREAM, "::1", P2, true, false)};
	pass_fds(fds, 2, "any:six");
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	CHECK_EQ(tcp(ls, "127.0.0.1", P1, 1, 1, &kept), 3);
	CHECK_EQ(tcp(ls, "127.0.0.9", P1, 2, 1, &kept), 3);
	/* IPv6 [::1]: an IPv4 intf is another host address */
	int v4 = tcp(ls, "127.0.0.1", P2, 1, 1, &kept);
	CHECK(v4 >= 0 && v4 != 4);
	CHECK_EQ(tcp(ls, "::1", P2, 1, 1, &kept), 4);
	CHECK_EQ(get(ls, SOCK_STREAM, "::", P2, false, NULL, 1, 1, &kept), 4);
	CHECK_EQ(get(ls, SOCK_STREAM, "::", P2, true, NULL, 1, 1, &kept), 4);
	cs_listeners_destroy(ls);
}

Test(listeners, systemd_wildcard_rules)
{
	int probe = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool v6 = probe >= 0 && bind(probe, (struct sockaddr *)&s6, sizeof(s6)) == 0;
	if (probe >= 0)
		close(probe);
	if (!v6)
		cr_skip_test("no IPv6 loopback");
	pick_ports();
	in_child(body_wildcard_systemd);
}

static void body_by_fdname(void)
{
	const char *log;
	cs_listeners *ls = create_web_api(&log);
	bool kept;
	capture_start();
	/* the port does not matter */
	int api = get(ls, SOCK_STREAM, "0.0.0.0", 1, true, "api", 1, 1, &kept);
	int web = get(ls, SOCK_STREAM, "127.0.0.1", P2, false, "web", 1, 1, &kept);
	int api_on_p1 = get(ls, SOCK_STREAM, "127.0.0.1", P1, false, "api", 1, 1, &kept);
	/* no such name: the port is bound here */
	int none = get(ls, SOCK_STREAM, "127.0.0.1", P3, false, "nope", 1, 1, &kept);
	log = capture_end();
	CHECK_EQ(api, 4);
	CHECK_EQ(web, 3);
	CHECK_EQ(api_on_p1, 4);
	CHECK(kept);
	CHECK(none >= 0 && none != 3 && none != 4);
	CHECK_EQ(bound_port(none), P3);
	char want[160];
	snprintf(want, sizeof(want),
		 "<5>cosockd: bind 1 fdname api: adopted systemd socket 4 (name api) 127.0.0.1:%d\n", P2);
	CHECK_HAS(log, want);
	snprintf(want, sizeof(want),
		 "<5>cosockd: bind %d: no systemd socket is named nope; binding the port\n", P3);
	CHECK_HAS(log, want);
	/* a name picks among sockets on the same port too: type still counts */
	int dg = get(ls, SOCK_DGRAM, "127.0.0.1", P3, false, "web", 1, 1, &kept);
	CHECK(dg >= 0 && dg != 3);
	CHECK_EQ(sockopt(dg, SO_TYPE), SOCK_DGRAM);
	cs_listeners_destroy(ls);
}

Test(listeners, systemd_adopted_by_fdname)
{
	pick_ports();
	in_child(body_by_fdname);
}

static void body_type_must_match(void)
{
	int fds[2] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, false),
		      make_sock(SOCK_DGRAM, "127.0.0.1", P2, false, false)};
	pass_fds(fds, 2, "web:dns");
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	const char *log = capture_end();
	char want[160];
	snprintf(want, sizeof(want), "<6>cosockd: systemd socket 4 (name dns): 127.0.0.1:%d datagram\n", P2);
	CHECK_HAS(log, want);
	bool kept;
	/* UDP on the TCP socket's port: bound here */
	int u = get(ls, SOCK_DGRAM, "127.0.0.1", P1, false, NULL, 1, 1, &kept);
	CHECK(u >= 0 && u != 3 && u != 4);
	CHECK_EQ(sockopt(u, SO_TYPE), SOCK_DGRAM);
	/* TCP on the UDP socket's port: bound here, listening */
	int t = tcp(ls, "127.0.0.1", P2, 1, 1, &kept);
	CHECK(t >= 0 && t != 3 && t != 4);
	CHECK_EQ(sockopt(t, SO_ACCEPTCONN), 1);
	/* UDP on its port: adopted, by port and by name */
	CHECK_EQ(get(ls, SOCK_DGRAM, "127.0.0.1", P2, false, NULL, 1, 1, &kept), 4);
	CHECK(kept);
	CHECK_EQ(get(ls, SOCK_DGRAM, "0.0.0.0", P3, true, "dns", 2, 1, &kept), 4);
	int t3 = get(ls, SOCK_STREAM, "0.0.0.0", P3, true, "dns", 1, 1, &kept);
	CHECK(t3 >= 0 && t3 != 4);
	CHECK_EQ(sockopt(t3, SO_TYPE), SOCK_STREAM);
	cs_listeners_destroy(ls);
	CHECK(fd_closed(3) && fd_closed(4));
}

Test(listeners, systemd_type_must_match)
{
	pick_ports();
	in_child(body_type_must_match);
}

/* web without SO_REUSEPORT: every slot shares it. api with SO_REUSEPORT
 * (set before listen, as ReusePort=yes does): slot 1 uses it, others get
 * siblings kept per slot; drop_slot and retire close siblings only. */
static void body_siblings(void)
{
	int fds[2] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, false),
		      make_sock(SOCK_STREAM, "127.0.0.1", P2, true, true)};
	pass_fds(fds, 2, "web:api");
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	capture_start();
	for (unsigned slot = 1; slot <= 3; slot++) {
		CHECK_EQ(tcp(ls, "127.0.0.1", P1, slot, 1, &kept), 3);
		CHECK(kept);
	}
	const char *log = capture_end();
	CHECK_LACKS(log, "SO_REUSEPORT"); /* sharing it is the plan, not a fallback */
	CHECK_EQ(count_of(log, "\n"), 1); /* the adoption */
	CHECK_EQ(tcp(ls, "127.0.0.1", P2, 1, 1, &kept), 4);
	int s2 = tcp(ls, "127.0.0.1", P2, 2, 1, &kept);
	CHECK(s2 >= 0 && s2 != 3 && s2 != 4);
	CHECK(kept);
	CHECK(!same_socket(s2, 4));
	CHECK_EQ(sockopt(s2, SO_ACCEPTCONN), 1);
	CHECK_EQ(sockopt(s2, SO_REUSEPORT), 1);
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%d", P2);
	CHECK(!strcmp(bound_at(s2), want));
	CHECK_EQ(tcp(ls, "127.0.0.1", P2, 2, 1, &kept), s2);
	/* by name, from any port, the same sibling */
	CHECK_EQ(get(ls, SOCK_STREAM, "0.0.0.0", 1, true, "api", 2, 1, &kept), s2);
	/* a sibling made for a request by name sits on systemd's address */
	int s3 = get(ls, SOCK_STREAM, "0.0.0.0", 1, true, "api", 3, 1, &kept);
	CHECK(s3 >= 0 && s3 != s2 && s3 != 4 && s3 != 3);
	CHECK(!strcmp(bound_at(s3), want));
	CHECK_EQ(tcp(ls, "127.0.0.1", P2, 3, 1, &kept), s3);
	CHECK_EQ(tcp(ls, "127.0.0.1", P2, 1, 1, &kept), 4);

	cs_listeners_drop_slot(ls, 2);
	CHECK(fd_closed(s2));
	CHECK(fd_open(3) && fd_open(4) && fd_open(s3));
	cs_listeners_retire(ls, 2, 1);
	CHECK(fd_closed(s3));
	CHECK(fd_open(3) && fd_open(4));
	/* a new worker in slot 2 gets a new sibling */
	int n2 = tcp(ls, "127.0.0.1", P2, 2, 2, &kept);
	CHECK(n2 >= 0 && n2 != 3 && n2 != 4);
	CHECK(kept);
	CHECK_EQ(sockopt(n2, SO_ACCEPTCONN), 1);
	CHECK_EQ(bound_port(n2), P2);
	cs_listeners_destroy(ls);
	CHECK(fd_closed(3) && fd_closed(4) && fd_closed(n2));
}

Test(listeners, systemd_reuseport_siblings)
{
	pick_ports();
	in_child(body_siblings);
}

/* With SO_REUSEPORT but no sibling possible (a socket of another user:
 * the kernel refuses to group them), the slots share systemd's socket,
 * and that is logged once. */
static void body_sibling_refused(void)
{
	int fds[1] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, true)};
	pass_fds(fds, 1, "api");
	cs_listeners *ls = cs_listeners_create();
	CHECK_EQ(seteuid(65534), 0);
	bool kept;
	capture_start();
	int a = tcp(ls, "127.0.0.1", P1, 2, 1, &kept);
	bool kept_a = kept;
	int b = tcp(ls, "127.0.0.1", P1, 3, 1, &kept);
	const char *log = capture_end();
	CHECK_EQ(a, 3);
	CHECK(kept_a);
	CHECK_EQ(b, 3);
	CHECK(kept);
	CHECK_EQ(count_of(log, "<5>cosockd: systemd socket 3 (name api): no SO_REUSEPORT sibling ("), 1);
	CHECK_HAS(log, "; the workers share it\n");
	cs_listeners_destroy(ls);
	CHECK(fd_closed(3));
}

Test(listeners, systemd_sibling_refused_shares)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to make a socket of another user");
	pick_ports();
	in_child(body_sibling_refused);
}

/* Many slots on a systemd socket with SO_REUSEPORT, a UDP one among
 * them: the table grows while siblings are made (ASan watches), UDP
 * siblings do not listen, and every slot keeps its own. */
static void body_many_siblings(void)
{
	int fds[2] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, true),
		      make_sock(SOCK_DGRAM, "127.0.0.1", P2, false, true)};
	pass_fds(fds, 2, "web:dns");
	cs_listeners *ls = cs_listeners_create();
	int t[21], u[21];
	bool kept;
	for (unsigned slot = 1; slot <= 20; slot++) {
		t[slot] = tcp(ls, "127.0.0.1", P1, slot, 1, &kept);
		CHECK(kept);
		u[slot] = get(ls, SOCK_DGRAM, "127.0.0.1", P2, false, NULL, slot, 1, &kept);
		CHECK(kept);
		CHECK(t[slot] >= 0 && u[slot] >= 0);
	}
	CHECK_EQ(t[1], 3);
	CHECK_EQ(u[1], 4);
	for (unsigned slot = 2; slot <= 20; slot++) {
		CHECK(t[slot] != 3 && u[slot] != 4);
		CHECK_EQ(sockopt(t[slot], SO_ACCEPTCONN), 1);
		CHECK_EQ(sockopt(u[slot], SO_TYPE), SOCK_DGRAM);
		CHECK_EQ(sockopt(u[slot], SO_ACCEPTCONN), 0);
		CHECK_EQ(bound_port(u[slot]), P2);
		for (unsigned other = 1; other < slot; other++)
			CHECK(t[other] != t[slot] && u[other] != u[slot]);
	}
	for (unsigned slot = 20; slot >= 1; slot--) {
		CHECK_EQ(tcp(ls, "127.0.0.1", P1, slot, 2, &kept), t[slot]);
		CHECK_EQ(get(ls, SOCK_DGRAM, "127.0.0.1", P2, false, NULL, slot, 2, &kept), u[slot]);
	}
	cs_listeners_retire(ls, 2, 10);
	for (unsigned slot = 1; slot <= 20; slot++) {
		CHECK(fd_open(t[slot]) == (slot <= 10));
		CHECK(fd_open(u[slot]) == (slot <= 10));
	}
	cs_listeners_destroy(ls);
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", P1));
	CHECK(port_bindable(SOCK_DGRAM, "127.0.0.1", P2));
}

Test(listeners, systemd_many_siblings)
{
	pick_ports();
	in_child(body_many_siblings);
}

/* LISTEN_FDNAMES that does not match LISTEN_FDS: sd_listen_fds_with_names
 * refuses; that is logged and nothing is adopted. */
static void body_names_mismatch(void)
{
	int fds[2] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, false),
		      make_sock(SOCK_STREAM, "127.0.0.1", P2, true, false)};
	pass_fds(fds, 2, "only");
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	const char *log = capture_end();
	CHECK(ls != NULL);
	char want[160];
	snprintf(want, sizeof(want), "<4>cosockd: cannot take the sockets systemd passed: %s\n",
		 strerror(EINVAL));
	CHECK_HAS(log, want);
	CHECK_EQ(count_of(log, "\n"), 1);
	CHECK(getenv("LISTEN_FDS") == NULL);
	bool kept;
	CHECK_EQ(tcp(ls, "127.0.0.1", P1, 1, 1, &kept), -EADDRINUSE);
	cs_listeners_destroy(ls);
}

Test(listeners, systemd_names_mismatch_logged)
{
	pick_ports();
	in_child(body_names_mismatch);
}

/* A TCP socket that does not listen, an AF_UNIX one and a file are
 * closed and skipped; the good one after them is taken. */
static void body_wrong_kinds(void)
{
	int fds[4];
	fds[0] = make_sock(SOCK_STREAM, "127.0.0.1", P1, false, false);
	fds[1] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fds[1] >= 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n =
	    snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "cosockd-test-listeners-%d", (int)getpid());
	CHECK_EQ(bind(fds[1], (struct sockaddr *)&sun,
		      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)),
		 0);
	CHECK_EQ(listen(fds[1], 4), 0);
	fds[2] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(fds[2] >= 0);
	fds[3] = make_sock(SOCK_STREAM, "127.0.0.1", P2, true, false);
	pass_fds(fds, 4, "idle:unix:file:ok");
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	bool c3 = fd_closed(3), c4 = fd_closed(4), c5 = fd_closed(5), o6 = fd_open(6);
	const char *log = capture_end();
	CHECK(c3);
	CHECK(c4);
	CHECK(c5);
	CHECK(o6);
	CHECK_HAS(
	    log,
	    "<4>cosockd: systemd socket 3 (name idle) is neither a listening TCP nor a UDP socket; closed\n");
	CHECK_HAS(
	    log,
	    "<4>cosockd: systemd socket 4 (name unix) is neither a listening TCP nor a UDP socket; closed\n");
	CHECK_HAS(
	    log,
	    "<4>cosockd: systemd socket 5 (name file) is neither a listening TCP nor a UDP socket; closed\n");
	char want[160];
	snprintf(want, sizeof(want), "<6>cosockd: systemd socket 6 (name ok): 127.0.0.1:%d stream\n", P2);
	CHECK_HAS(log, want);
	CHECK_EQ(count_of(log, "\n"), 4);
	bool kept;
	CHECK_EQ(tcp(ls, "127.0.0.1", P2, 1, 1, &kept), 6);
	/* the skipped one's port is not adopted: bound here */
	int p1 = tcp(ls, "127.0.0.1", P1, 1, 1, &kept);
	CHECK(p1 >= 0 && p1 != 6);
	CHECK_EQ(sockopt(p1, SO_ACCEPTCONN), 1);
	capture_start();
	cs_listeners_warn_unadopted(ls);
	log = capture_end();
	CHECK_EQ(log[0], '\0');
	cs_listeners_destroy(ls);
	CHECK(fd_closed(6));
}

Test(listeners, systemd_wrong_kinds_closed)
{
	pick_ports();
	in_child(body_wrong_kinds);
}

/* LISTEN_PID of another process: not ours, not taken, not closed. */
static void body_other_pid(void)
{
	int fds[1] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, false)};
	pass_fds(fds, 1, "web");
	char v[32];
	snprintf(v, sizeof(v), "%d", (int)getppid());
	CHECK_EQ(setenv("LISTEN_PID", v, 1), 0);
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	cs_listeners_warn_unadopted(ls);
	const char *log = capture_end();
	CHECK_EQ(log[0], '\0');
	CHECK(getenv("LISTEN_FDS") == NULL);
	CHECK(getenv("LISTEN_PID") == NULL);
	bool kept;
	/* it still listens without SO_REUSEPORT: binding the port fails */
	CHECK_EQ(tcp(ls, "127.0.0.1", P1, 1, 1, &kept), -EADDRINUSE);
	cs_listeners_destroy(ls);
	CHECK(fd_open(3));
}

Test(listeners, systemd_other_pid_ignored)
{
	pick_ports();
	in_child(body_other_pid);
}

/* Without LISTEN_FDNAMES every socket is named "unknown". */
static void body_no_names(void)
{
	int fds[1] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, false)};
	pass_fds(fds, 1, NULL);
	capture_start();
	cs_listeners *ls = cs_listeners_create();
	const char *log = capture_end();
	char want[160];
	snprintf(want, sizeof(want), "<6>cosockd: systemd socket 3 (name unknown): 127.0.0.1:%d stream\n",
		 P1);
	CHECK_HAS(log, want);
	bool kept;
	CHECK_EQ(tcp(ls, "127.0.0.1", P1, 1, 1, &kept), 3);
	cs_listeners_destroy(ls);
}

Test(listeners, systemd_without_names)
{
	pick_ports();
	in_child(body_no_names);
}

static void body_open_local(void)
{
	const char *log;
	cs_listeners *ls = create_web_api(&log);
	bool shared;
	int d = open_local(ls, SOCK_STREAM, "0.0.0.0", P1, true, &shared);
	CHECK(d >= 0 && d != 3);
	CHECK(shared);
	CHECK(same_socket(d, 3));
	CHECK(fcntl(d, F_GETFD) & FD_CLOEXEC);
	int d2 = open_local(ls, SOCK_STREAM, "127.0.0.1", P1, false, &shared);
	CHECK(d2 >= 0 && d2 != 3 && d2 != d);
	CHECK(shared);
	CHECK(same_socket(d2, 3));
	close(d);
	close(d2);
	CHECK(fd_open(3));
	CHECK_EQ(sockopt(3, SO_ACCEPTCONN), 1);
	/* not systemd's: a fresh, exclusive socket of the caller's */
	int f = open_local(ls, SOCK_STREAM, "127.0.0.1", P3, false, &shared);
	CHECK(f >= 0 && f != 3 && f != 4);
	CHECK(!shared);
	CHECK_EQ(sockopt(f, SO_REUSEPORT), 0);
	CHECK_EQ(bound_port(f), P3);
	cs_listeners_destroy(ls);
	CHECK(fd_closed(3));
	CHECK(fd_open(f));
}

Test(listeners, systemd_open_local_dups)
{
	pick_ports();
	in_child(body_open_local);
}

static void body_warn_unadopted(void)
{
	const char *log;
	cs_listeners *ls = create_web_api(&log);
	bool kept;
	CHECK_EQ(tcp(ls, "127.0.0.1", P1, 1, 1, &kept), 3);
	CHECK(tcp(ls, "127.0.0.1", P3, 1, 1, &kept) >= 0); /* ours, not systemd's */
	capture_start();
	cs_listeners_warn_unadopted(ls);
	log = capture_end();
	char want[160];
	snprintf(
	    want, sizeof(want),
	    "<4>cosockd: systemd socket 4 (name api) 127.0.0.1:%d: no script binds it; it stays unused\n",
	    P2);
	CHECK_HAS(log, want);
	CHECK_LACKS(log, "name web");
	CHECK_EQ(count_of(log, "\n"), 1);
	/* an open_local dup counts as adopted */
	bool shared;
	int d = open_local(ls, SOCK_STREAM, "127.0.0.1", P2, false, &shared);
	CHECK(d >= 0);
	close(d);
	capture_start();
	cs_listeners_warn_unadopted(ls);
	log = capture_end();
	CHECK_EQ(log[0], '\0');
	cs_listeners_destroy(ls);
}

Test(listeners, systemd_warn_unadopted)
{
	pick_ports();
	in_child(body_warn_unadopted);
}

/* destroy closes systemd's sockets, their siblings and kept sockets. */
static void body_destroy_all(void)
{
	int fds[2] = {make_sock(SOCK_STREAM, "127.0.0.1", P1, true, true),
		      make_sock(SOCK_DGRAM, "127.0.0.1", P2, false, false)};
	pass_fds(fds, 2, "web:dns");
	int before = count_fds();
	cs_listeners *ls = cs_listeners_create();
	bool kept;
	for (unsigned slot = 1; slot <= 3; slot++) {
		CHECK(tcp(ls, "127.0.0.1", P1, slot, 1, &kept) >= 0);
		CHECK_EQ(get(ls, SOCK_DGRAM, "127.0.0.1", P2, false, NULL, slot, 1, &kept), 4);
		CHECK(tcp(ls, "127.0.0.1", P3, slot, 1, &kept) >= 0);
	}
	CHECK_EQ(count_fds(), before + 2 + 3);
	cs_listeners_destroy(ls);
	CHECK_EQ(count_fds(), before - 2);
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", P1));
	CHECK(port_bindable(SOCK_DGRAM, "127.0.0.1", P2));
	CHECK(port_bindable(SOCK_STREAM, "127.0.0.1", P3));
}

Test(listeners, systemd_destroy_leaves_no_fd)
{
	pick_ports();
	in_child(body_destroy_all);
}
