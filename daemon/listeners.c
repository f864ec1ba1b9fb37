/*
 * listeners.c - systemd's sockets and the sockets kept for the workers
 * (see listeners.h). A handful of entries at most: plain arrays, linear
 * search.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "listeners.h"
#include "log.h"

struct kept {
	int fd;
	int type;            /* SOCK_STREAM (listening) or SOCK_DGRAM */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned slot;       /* 0: systemd's own socket */
	unsigned generation; /* the last generation that asked for it */
	unsigned created;    /* the generation that asked first */
	char *name;          /* systemd's FileDescriptorName; NULL: bound here */
	bool reuseport;      /* systemd's socket has SO_REUSEPORT: siblings */
	bool adopted, shared_logged;
};

struct cs_listeners {
	struct kept *k;
	unsigned n, cap;
};

static int addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return -1;
}

static bool addr_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

static bool addr_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
		       sizeof(struct in6_addr));
}

static void describe(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
	snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, addr_port(sa));
}

static struct kept *add(cs_listeners *ls)
{
	if (ls->n == ls->cap) {
		unsigned cap = ls->cap ? 2 * ls->cap : 8;
		struct kept *k = realloc(ls->k, cap * sizeof(*k));
		if (!k)
			return NULL;
		ls->k = k;
		ls->cap = cap;
	}
	struct kept *k = &ls->k[ls->n++];
	memset(k, 0, sizeof(*k));
	k->fd = -1;
	return k;
}

/* Keep fd if it is a listening TCP or a UDP socket on an IP address. */
static void take_systemd_socket(cs_listeners *ls, int fd, const char *name)
{
	int type = 0, listening = 0;
	socklen_t tl = sizeof(type), ll = sizeof(listening);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
		type = -1;
	bool stream_ok = type == SOCK_STREAM &&
			 getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 && listening;
	if ((type != SOCK_DGRAM && !stream_ok) || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
		cs_log(CS_LOG_WARNING, "cosockd: systemd socket %d (name %s) is neither a listening TCP nor a UDP socket; closed",
		       fd, name);
		close(fd);
		return;
	}
	struct kept *k = add(ls);
	if (!k || !(k->name = strdup(name))) {
		if (k)
			ls->n--;
		cs_log(CS_LOG_ERR, "cosockd: out of memory; systemd socket %d closed", fd);
		close(fd);
		return;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	k->type = type;
	int on = 0;
	socklen_t ol = sizeof(on);
	k->reuseport = getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &ol) == 0 && on;
	k->fd = fd;
	k->addr = ss;
	k->addrlen = sl;
	char where[80];
	describe((struct sockaddr *)&ss, where, sizeof(where));
	cs_log(CS_LOG_INFO, "cosockd: systemd socket %d (name %s): %s %s", fd, name, where,
	       type == SOCK_STREAM ? "stream" : "datagram");
}

cs_listeners *cs_listeners_create(void)
{
	cs_listeners *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return NULL;
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 0)
		cs_log(CS_LOG_WARNING, "cosockd: cannot take the sockets systemd passed: %s", strerror(-n));
	for (int i = 0; i < n; i++)
		take_systemd_socket(ls, SD_LISTEN_FDS_START + i, names && names[i] ? names[i] : "unknown");
	if (names) {
		for (int i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return ls;
}

void cs_listeners_destroy(cs_listeners *ls)
{
	if (!ls)
		return;
	for (unsigned i = 0; i < ls->n; i++) {
		if (ls->k[i].fd >= 0)
			close(ls->k[i].fd);
		free(ls->k[i].name);
	}
	free(ls->k);
	free(ls);
}

static struct kept *find_systemd(cs_listeners *ls, const struct cs_listen_req *req)
{
	int port = addr_port(req->addr);
	for (unsigned i = 0; i < ls->n; i++) {
		struct kept *k = &ls->k[i];
		if (!k->name || k->type != req->type)
			continue;
		if (req->fdname) {
			if (!strcmp(req->fdname, k->name))
				return k;
			continue;
		}
		const struct sockaddr *a = (const struct sockaddr *)&k->addr;
		if (port == addr_port(a) &&
		    (req->any_addr || addr_wildcard(a) || addr_wildcard(req->addr) || addr_same_host(a, req->addr)))
			return k;
	}
	return NULL;
}

static int bind_new(int type, const struct sockaddr *addr, socklen_t addrlen, bool reuseport)
{
	int fd = socket(addr->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, addr, addrlen) < 0 || (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The socket kept for (type, addr, slot), made if missing. */
static int kept_for_slot(cs_listeners *ls, int type, const struct sockaddr *addr, socklen_t addrlen,
			 unsigned slot, unsigned generation, bool *kept)
{
	struct kept *k;
	for (unsigned i = 0; i < ls->n; i++) {
		k = &ls->k[i];
		if (k->slot == slot && !k->name && k->type == type && k->addrlen == addrlen &&
		    !memcmp(&k->addr, addr, addrlen)) {
			k->generation = generation;
			*kept = true;
			return k->fd;
		}
	}
	int fd = bind_new(type, addr, addrlen, true);
	if (fd < 0)
		return fd;
	if (!(k = add(ls))) {
		close(fd);
		return -ENOMEM;
	}
	k->fd = fd;
	k->type = type;
	memcpy(&k->addr, addr, addrlen);
	k->addrlen = addrlen;
	k->slot = slot;
	k->generation = k->created = generation;
	*kept = true;
	return fd;
}

int cs_listeners_get(cs_listeners *ls, const struct cs_listen_req *req, unsigned slot, unsigned generation,
		     bool *kept)
{
	*kept = false;
	if (req->addr->sa_family != AF_INET && req->addr->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	struct kept *k = find_systemd(ls, req);
	if (k) {
		if (!k->adopted) {
			char where[80];
			describe((struct sockaddr *)&k->addr, where, sizeof(where));
			cs_log(CS_LOG_NOTICE, "cosockd: bind %d%s%s: adopted systemd socket %d (name %s) %s",
			       addr_port(req->addr), req->fdname ? " fdname " : "", req->fdname ? req->fdname : "",
			       k->fd, k->name, where);
			k->adopted = true;
		}
		if (slot > 1 && k->reuseport) {
			struct sockaddr_storage addr = k->addr; /* k moves if ls->k grows */
			int fd = kept_for_slot(ls, k->type, (struct sockaddr *)&addr, k->addrlen, slot, generation, kept);
			if (fd >= 0)
				return fd;
			/* another user's socket (SO_REUSEPORT wants the same
			 * one for all): share it */
			k = find_systemd(ls, req);
			if (!k->shared_logged)
				cs_log(CS_LOG_NOTICE, "cosockd: systemd socket %d (name %s): no SO_REUSEPORT sibling (%s); the workers share it",
				       k->fd, k->name, strerror(-fd));
			k->shared_logged = true;
		}
		*kept = true;
		return k->fd;
	}
	if (req->fdname)
		cs_log(CS_LOG_NOTICE, "cosockd: bind %d: no systemd socket is named %s; binding the port",
		       addr_port(req->addr), req->fdname);
	if (!slot || addr_port(req->addr) == 0)
		return bind_new(req->type, req->addr, req->addrlen, slot > 0);
	return kept_for_slot(ls, req->type, req->addr, req->addrlen, slot, generation, kept);
}

static void close_kept_if(cs_listeners *ls, bool (*drop)(const struct kept *k, unsigned a, unsigned b),
			  unsigned a, unsigned b, const char *why)
{
	unsigned j = 0;
	for (unsigned i = 0; i < ls->n; i++) {
		struct kept *k = &ls->k[i];
		if (!k->name && drop(k, a, b)) {
			char where[80];
			describe((struct sockaddr *)&k->addr, where, sizeof(where));
			cs_log(CS_LOG_INFO, "cosockd: master: closing the listening socket %s of worker slot %u: %s",
			       where, k->slot, why);
			close(k->fd);
			continue;
		}
		ls->k[j++] = *k;
	}
	ls->n = j;
}

static bool of_slot(const struct kept *k, unsigned slot, unsigned unused)
{
	(void)unused;
	return k->slot == slot;
}

static bool unwanted(const struct kept *k, unsigned generation, unsigned slots)
{
	return k->generation < generation || k->slot > slots;
}

static bool only_of(const struct kept *k, unsigned generation, unsigned unused)
{
	(void)unused;
	return k->created == generation && k->generation == generation;
}

void cs_listeners_abandon(cs_listeners *ls, unsigned generation)
{
	close_kept_if(ls, only_of, generation, 0, "its reload failed");
}

void cs_listeners_drop_slot(cs_listeners *ls, unsigned slot)
{
	close_kept_if(ls, of_slot, slot, 0, "its worker is gone");
}

void cs_listeners_retire(cs_listeners *ls, unsigned generation, unsigned slots)
{
	close_kept_if(ls, unwanted, generation, slots, "no longer used");
}

void cs_listeners_warn_unadopted(cs_listeners *ls)
{
	for (unsigned i = 0; i < ls->n; i++) {
		struct kept *k = &ls->k[i];
		if (!k->name || k->adopted)
			continue;
		char where[80];
		describe((struct sockaddr *)&k->addr, where, sizeof(where));
		cs_log(CS_LOG_WARNING, "cosockd: systemd socket %d (name %s) %s: no script binds it; it stays unused",
		       k->fd, k->name, where);
	}
}

int cs_listeners_open_local(void *ctx, const struct cs_listen_req *req, bool *shared)
{
	bool kept;
	int fd = cs_listeners_get(ctx, req, 0, 0, &kept);
	*shared = kept;
	if (fd >= 0 && kept && (fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	return fd;
}
