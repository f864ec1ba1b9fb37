/*
 * util.c - option parsing, sockets and /proc readers for cosockd-bench.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static void vfail(int status, const char *fmt, va_list ap) __attribute__((noreturn));

static void vfail(int status, const char *fmt, va_list ap)
{
	fflush(stdout);
	fputs("cosockd-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	exit(status);
}

void cs__fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(1, fmt, ap);
}

void cs__fail_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(2, fmt, ap);
}

static void parse_addr(const char *opt, const char *s, struct sockaddr_in *sa,
		       uint64_t min_port)
{
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];

	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
		cs__fail_usage("%s: want A.B.C.D:PORT, got '%s'", opt, s);
	memcpy(host, s, colon - s);
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)cs__parse_u64(opt, colon + 1, min_port, 65535));
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		cs__fail_usage("%s: '%s' is not an IPv4 address", opt, host);
}

void cs__parse_target(const char *opt, const char *s, struct sockaddr_in *sa)
{
	parse_addr(opt, s, sa, 1);
}

void cs__parse_listen(const char *opt, const char *s, struct sockaddr_in *sa)
{
	parse_addr(opt, s, sa, 0);
}

uint64_t cs__parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < min || v > max)
		cs__fail_usage("%s: want an integer in [%llu, %llu], got '%s'", opt,
			 (unsigned long long)min, (unsigned long long)max, s);
	return v;
}

double cs__parse_secs(const char *opt, const char *s)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 86400 * 365)
		cs__fail_usage("%s: want seconds >= 0, got '%s'", opt, s);
	return v;
}

uint64_t cs__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * CS__NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

void cs__sleep_until(uint64_t t)
{
	struct timespec ts = {
		.tv_sec = (time_t)(t / CS__NS_PER_SEC),
		.tv_nsec = (long)(t % CS__NS_PER_SEC),
	};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

uint64_t cs__self_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * CS__NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t cs__raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

static int is_loopback(const struct sockaddr_in *sa)
{
	return (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
}

/* 127.0.0.2 .. 127.0.0.254: 253 source addresses. */
static uint32_t source_addr(uint64_t index)
{
	return (127u << 24) | (uint32_t)(2 + index % 253);
}

const char *cs__source_name(const struct sockaddr_in *target, uint64_t index)
{
	static char buf[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = htonl(source_addr(index))};

	if (!is_loopback(target))
		return "(any)";
	return inet_ntop(AF_INET, &a, buf, sizeof(buf));
}

/* Bind to the index's loopback source address, port chosen at connect()
 * time (IP_BIND_ADDRESS_NO_PORT), so the 4-tuple, not the port alone, must
 * be unique. */
static int bind_source(int fd, uint64_t index)
{
	struct sockaddr_in src = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(source_addr(index)),
	};
	int one = 1;

	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	return bind(fd, (struct sockaddr *)&src, sizeof(src));
}

static void set_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};
	/* On Linux, SO_SNDTIMEO also bounds a blocking connect(). */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* A TCP socket for connection index to target: TCP_NODELAY, bound to its
 * source address. Returns the fd or -errno. */
static int client_socket(const struct sockaddr_in *target, uint64_t index, int flags)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);

	if (fd < 0)
		return -errno;
	if (is_loopback(target) && bind_source(fd, index) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int cs__connect(const struct sockaddr_in *target, uint64_t index, int timeout_ms)
{
	int fd = client_socket(target, index, 0);

	if (fd < 0)
		return fd;
	set_timeouts(fd, timeout_ms);
	while (connect(fd, (const struct sockaddr *)target, sizeof(*target)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS || errno == EAGAIN)
			errno = ETIMEDOUT; /* SO_SNDTIMEO expired */
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int cs__connect_start(const struct sockaddr_in *target, uint64_t index)
{
	int fd = client_socket(target, index, SOCK_NONBLOCK);

	if (fd < 0)
		return fd;
	if (connect(fd, (const struct sockaddr *)target, sizeof(*target)) < 0 &&
	    errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int cs__set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

void cs__fill_pattern(unsigned char *out, size_t len)
{
	/* Period 251 (prime), so the pattern never lines up with power-of-two
	 * buffer sizes and a shifted or repeated chunk shows. */
	for (size_t i = 0; i < len; i++)
		out[i] = (unsigned char)('!' + (i % CS__PATTERN_PERIOD) % 94);
}
