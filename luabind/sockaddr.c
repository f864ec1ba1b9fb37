/*
 * sockaddr.c - names and addresses for ba.socket: resolution off the loop
 * thread, address formatting, listening sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int cs__resolve_now(const char *host, int port, bool ipv6, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = ipv6 ? AF_INET6 : AF_UNSPEC};
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_ADDRCONFIG);
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%d", port);
	int r = getaddrinfo(host, portstr, &hints, res);
	if (r == EAI_BADFLAGS || (r != 0 && (hints.ai_flags & AI_ADDRCONFIG))) {
		/* AI_ADDRCONFIG hides loopback-only families; try without. */
		hints.ai_flags &= ~AI_ADDRCONFIG;
		r = getaddrinfo(host, portstr, &hints, res);
	}
	return r;
}

/* Numeric addresses resolve at once and without blocking. */
static int resolve_numeric(const char *host, int port, bool ipv6, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = ipv6 ? AF_INET6 : AF_UNSPEC,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%d", port);
	return getaddrinfo(host, portstr, &hints, res);
}

static void resolve_work(cs_job *job)
{
	struct cs_resolve *r = (struct cs_resolve *)job;
	r->gai_err = cs__resolve_now(r->host, atoi(r->port), r->ipv6, false, &r->res);
}

static void resolve_done(cs_job *job)
{
	struct cs_resolve *r = (struct cs_resolve *)job;
	cs_sock *sock = r->sock;
	if (sock) {
		sock->vm->resolving--;
		sock->resolve = NULL;
		cs__connect_resolved(sock, r->gai_err ? NULL : r->res, r->gai_err);
	} else if (r->res) {
		freeaddrinfo(r->res); /* the socket stopped waiting meanwhile */
	}
	free(r->host);
	free(r);
}

int cs__resolve_start(cs_sock *sock, const char *host, int port, bool ipv6)
{
	struct addrinfo *res = NULL;
	if (resolve_numeric(host, port, ipv6, &res) == 0) {
		cs__connect_resolved(sock, res, 0);
		return 0;
	}
	struct cs_resolve *r = calloc(1, sizeof(*r));
	if (!r || !(r->host = strdup(host))) {
		free(r);
		return -ENOMEM;
	}
	snprintf(r->port, sizeof(r->port), "%d", port);
	r->ipv6 = ipv6;
	r->sock = sock;
	r->job.work = resolve_work;
	r->job.done = resolve_done;
	sock->resolve = r;
	sock->vm->resolving++;
	cs_pool_submit(sock->vm->resolver, &r->job);
	return 0;
}

int cs__addr_string(const struct sockaddr *sa, char *buf, size_t len, bool *ipv6)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &a->sin6_addr, buf, (socklen_t)len);
		*ipv6 = true;
		return ntohs(a->sin6_port);
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)len);
		*ipv6 = false;
		return ntohs(a->sin_port);
	}
	snprintf(buf, len, "?");
	*ipv6 = false;
	return 0;
}

int cs__fd_endpoint(int fd, bool peer, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char a[INET6_ADDRSTRLEN];
	bool v6;
	int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl) : getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (r < 0)
		return -1;
	int port = cs__addr_string((struct sockaddr *)&ss, a, sizeof(a), &v6);
	snprintf(buf, len, "%s:%d", a, port);
	return port;
}

static int bind_here(const struct addrinfo *ai, bool reuseport)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Whether this vm already listens on addr: one listener per address and
 * worker, as a local bind would enforce, also when the sockets come from
 * the master (which keeps one per address and worker slot). */
static bool listening_on(cs_vm *vm, const struct sockaddr *addr, socklen_t len)
{
	for (cs_sock *s = vm->cosockets; s; s = s->next) {
		if (s->kind != CS_SOCK_LISTEN || !s->conn)
			continue;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(cs_conn_fd(s->conn), (struct sockaddr *)&ss, &sl) == 0 && sl == len &&
		    !memcmp(&ss, addr, len))
			return true;
	}
	return false;
}

int cs__bind_listener(cs_vm *vm, const char *intf, int port, bool ipv6, const char *fdname,
		      int *fd_out, bool *shared)
{
	struct addrinfo *res = NULL;
	int r = intf ? resolve_numeric(intf, port, ipv6, &res) : -1;
	if (r != 0 && intf)
		r = cs__resolve_now(intf, port, ipv6, true, &res);
	if (!intf)
		r = cs__resolve_now(ipv6 ? "::" : "0.0.0.0", port, ipv6, true, &res);
	if (r != 0)
		return -EADDRNOTAVAIL;
	int err = -EADDRNOTAVAIL;
	*shared = false;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd;
		if (vm->listen.open) {
			if (port && listening_on(vm, ai->ai_addr, ai->ai_addrlen)) {
				err = -EADDRINUSE;
				continue;
			}
			struct cs_listen_req req = {
				.type = SOCK_STREAM,
				.addr = ai->ai_addr,
				.addrlen = ai->ai_addrlen,
				.any_addr = !intf,
				.fdname = fdname,
			};
			fd = vm->listen.open(vm->listen.ctx, &req, shared);
		} else {
			fd = bind_here(ai, vm->reuseport);
		}
		if (fd >= 0) {
			freeaddrinfo(res);
			*fd_out = fd;
			return 0;
		}
		err = fd;
	}
	freeaddrinfo(res);
	return err;
}
