/*
 * test_notify.c - daemon/notify.c against a NOTIFY_SOCKET the test binds
 * itself (a path in a temporary directory, and an abstract "@name"): the
 * exact datagrams cs_notify and cs_notify_status send, STATUS sent once
 * per change, nothing without NOTIFY_SOCKET or after cs_notify_forget,
 * the watchdog interval for this pid only, and the single warning when
 * the socket is unreachable.
 *
 * notify.c keeps its state in statics; Criterion runs every test in a
 * process of its own, so each starts from nothing. "Nothing was sent" is
 * checked without waiting: the test then sends a sentinel datagram of its
 * own to the same socket, and the next datagram read must be it (a unix
 * datagram socket queues in order, and sd_notify has queued before it
 * returns).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

#define WAIT_MS 5000
#define SENTINEL "SENTINEL=from-the-test"

static char dir[64];
static int sock = -1;	       /* the test's NOTIFY_SOCKET */
static struct sockaddr_un sun; /* its address, to send the sentinel */
static socklen_t sunlen;

static void setup(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	strcpy(dir, "/tmp/cs-notify-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char path[128];
	if (sock >= 0)
		close(sock);
	snprintf(path, sizeof(path), "%s/notify", dir);
	unlink(path);
	rmdir(dir);
}

TestSuite(notify, .init = setup, .fini = teardown, .timeout = 30);

/* Bind the test's datagram socket at dir/notify and point NOTIFY_SOCKET
 * at it. */
static void listen_path(void)
{
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(sock, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/notify", dir);
	sunlen = sizeof(sun);
	cr_assert_eq(bind(sock, (struct sockaddr *)&sun, sunlen), 0, "bind %s: %s", sun.sun_path,
		     strerror(errno));
	cr_assert_eq(setenv("NOTIFY_SOCKET", sun.sun_path, 1), 0);
}

/* The same with an abstract socket, NOTIFY_SOCKET=@name. */
static void listen_abstract(void)
{
	char name[80];
	snprintf(name, sizeof(name), "cosockd-test-notify-%d-%s", (int)getpid(),
		 dir + strlen("/tmp/cs-notify-"));
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(sock, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path + 1, name, strlen(name));
	sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	cr_assert_eq(bind(sock, (struct sockaddr *)&sun, sunlen), 0, "bind @%s: %s", name, strerror(errno));
	char env[96];
	snprintf(env, sizeof(env), "@%s", name);
	cr_assert_eq(setenv("NOTIFY_SOCKET", env, 1), 0);
}

/* The next datagram on the test's socket, as a string; fails the test
 * when none comes within WAIT_MS. */
static const char *next_msg(void)
{
	static char buf[2048];
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int r = poll(&p, 1, WAIT_MS);
	cr_assert_eq(r, 1, "no datagram within %d ms", WAIT_MS);
	ssize_t n = recv(sock, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	cr_assert_geq(n, 0, "recv: %s", strerror(errno));
	buf[n] = '\0';
	return buf;
}

/* Assert that nothing was queued before this call: send the sentinel and
 * expect it to be the next datagram. */
static void expect_nothing_sent(void)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s, 0);
	cr_assert_eq(sendto(s, SENTINEL, strlen(SENTINEL), 0, (struct sockaddr *)&sun, sunlen),
		     (ssize_t)strlen(SENTINEL), "sendto: %s", strerror(errno));
	close(s);
	cr_assert_str_eq(next_msg(), SENTINEL, "a datagram was sent when none was expected");
}

/* stderr (where log.c writes) goes to a temporary file between
 * capture_start and capture_end, which returns what was written. */
static int saved_stderr = -1, capture_fd = -1;

static void capture_start(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/stderr-XXXXXX", dir);
	capture_fd = mkstemp(path);
	cr_assert_geq(capture_fd, 0);
	unlink(path);
	saved_stderr = dup(STDERR_FILENO);
	cr_assert_geq(saved_stderr, 0);
	cr_assert_eq(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

static const char *capture_end(void)
{
	static char buf[8192];
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	ssize_t n = pread(capture_fd, buf, sizeof(buf) - 1, 0);
	close(capture_fd);
	cr_assert_geq(n, 0);
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

Test(notify, sends_exact_text_to_a_path_socket)
{
	listen_path();
	cr_assert(cs_notify_enabled());
	cs_notify("READY=1");
	cr_assert_str_eq(next_msg(), "READY=1");
	cs_notify("STATUS=%u workers, %u connections", 2u, 17u);
	cr_assert_str_eq(next_msg(), "STATUS=2 workers, 17 connections");
	cs_notify("RELOADING=1\nMONOTONIC_USEC=%d", 42);
	cr_assert_str_eq(next_msg(), "RELOADING=1\nMONOTONIC_USEC=42");
	expect_nothing_sent();
}

Test(notify, sends_exact_text_to_an_abstract_socket)
{
	listen_abstract();
	cr_assert(cs_notify_enabled());
	cs_notify("STOPPING=1");
	cr_assert_str_eq(next_msg(), "STOPPING=1");
	expect_nothing_sent();
}

Test(notify, status_sent_once_per_change)
{
	listen_path();
	cs_notify_status("1 workers, 0 connections");
	cr_assert_str_eq(next_msg(), "STATUS=1 workers, 0 connections");
	cs_notify_status("1 workers, 0 connections");
	expect_nothing_sent();
	cs_notify_status("1 workers, 1 connections");
	cr_assert_str_eq(next_msg(), "STATUS=1 workers, 1 connections");
	/* only the last text is remembered: going back is a change */
	cs_notify_status("1 workers, 0 connections");
	cr_assert_str_eq(next_msg(), "STATUS=1 workers, 0 connections");
	cs_notify_status("1 workers, 0 connections");
	expect_nothing_sent();
	/* other notifications do not reset the last STATUS */
	cs_notify("WATCHDOG=1");
	cr_assert_str_eq(next_msg(), "WATCHDOG=1");
	cs_notify_status("1 workers, 0 connections");
	expect_nothing_sent();
}

/* A STATUS while there was no socket is not "sent": once NOTIFY_SOCKET
 * is there, the same text goes out. */
Test(notify, status_not_remembered_while_disabled)
{
	cs_notify_status("starting");
	listen_path();
	cs_notify_status("starting");
	cr_assert_str_eq(next_msg(), "STATUS=starting");
}

/* The contract is "unless it is the text sent last", whatever its length. */
Test(notify, long_status_sent_once)
{
	char text[400];
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	listen_path();
	cs_notify_status(text);
	const char *m = next_msg();
	cr_assert_eq(strncmp(m, "STATUS=xxx", 10), 0, "got %.20s", m);
	cs_notify_status(text);
	expect_nothing_sent();
}

Test(notify, nothing_without_notify_socket)
{
	listen_path();
	unsetenv("NOTIFY_SOCKET");
	capture_start();
	cr_assert_not(cs_notify_enabled());
	cs_notify("READY=1");
	cs_notify_status("idle");
	const char *err = capture_end();
	expect_nothing_sent();
	cr_assert_str_empty(err, "logged: %s", err);

	/* an empty NOTIFY_SOCKET counts as none */
	cr_assert_eq(setenv("NOTIFY_SOCKET", "", 1), 0);
	cr_assert_not(cs_notify_enabled());
	capture_start();
	cs_notify("READY=1");
	err = capture_end();
	expect_nothing_sent();
	cr_assert_str_empty(err, "logged: %s", err);
}

Test(notify, watchdog_interval_in_ms)
{
	cr_assert_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 400);
}

Test(notify, watchdog_for_this_pid)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	cr_assert_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
	cr_assert_eq(setenv("WATCHDOG_PID", pid, 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 400);
}

Test(notify, watchdog_of_another_pid_is_none)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid() == 1 ? 2 : 1);
	cr_assert_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
	cr_assert_eq(setenv("WATCHDOG_PID", pid, 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 0);
}

Test(notify, watchdog_absent_is_none)
{
	cr_assert_eq(cs_notify_watchdog_ms(), 0);
}

Test(notify, watchdog_below_a_millisecond_rounds_up)
{
	cr_assert_eq(setenv("WATCHDOG_USEC", "500", 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 1);
}

Test(notify, watchdog_garbage_is_none)
{
	cr_assert_eq(setenv("WATCHDOG_USEC", "soon", 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 0);
}

Test(notify, watchdog_read_once)
{
	cr_assert_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 400);
	cr_assert_eq(setenv("WATCHDOG_USEC", "2000000", 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 400);
	unsetenv("WATCHDOG_USEC");
	cr_assert_eq(cs_notify_watchdog_ms(), 400);
}

Test(notify, forget_unsets_and_silences)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	listen_path();
	cr_assert_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
	cr_assert_eq(setenv("WATCHDOG_PID", pid, 1), 0);
	cr_assert_eq(cs_notify_watchdog_ms(), 400);
	cs_notify("READY=1");
	cr_assert_str_eq(next_msg(), "READY=1");

	cs_notify_forget();
	cr_assert_null(getenv("NOTIFY_SOCKET"));
	cr_assert_null(getenv("WATCHDOG_USEC"));
	cr_assert_null(getenv("WATCHDOG_PID"));
	cr_assert_not(cs_notify_enabled());
	cr_assert_eq(cs_notify_watchdog_ms(), 0);
	cs_notify("WATCHDOG=1");
	cs_notify_status("after forget");
	expect_nothing_sent();
}

/* Forgetting before the watchdog was ever read: it stays 0 even though
 * the environment had one (a worker must never ping). */
Test(notify, forget_before_first_watchdog_read)
{
	cr_assert_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
	cs_notify_forget();
	cr_assert_eq(cs_notify_watchdog_ms(), 0);
}

Test(notify, unreachable_socket_warns_once)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/nobody-listens-here", dir);
	cr_assert_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
	cr_assert(cs_notify_enabled());
	capture_start();
	cs_notify("READY=1");
	cs_notify("STATUS=still nobody");
	cs_notify_status("and again");
	const char *err = capture_end();
	cr_assert_eq(count_of(err, "cannot notify systemd"), 1, "stderr: %s", err);
	cr_assert_eq(count_of(err, "\n"), 1, "stderr: %s", err);
	const char *prefix = "<4>cosockd: cannot notify systemd through $NOTIFY_SOCKET: ";
	cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "stderr: %s", err);
	cr_assert_not_null(strstr(err, strerror(ENOENT)), "stderr: %s", err);
}
