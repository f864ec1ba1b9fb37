/*
 * bare_util.h - the start-up chores the bare-C references (cs-bare-echo,
 * cs-bare-proxy) share, kept apart from their loops so that each loop
 * still reads as one self-contained file. Nothing here is on a hot path.
 */
#ifndef CS_BENCH_BARE_UTIL_H
#define CS_BENCH_BARE_UTIL_H

#include <netinet/in.h>

/* Print "<prog>: <what>: <strerror(errno)>" on stderr and exit(1). */
void cs__bare_die(const char *prog, const char *what) __attribute__((noreturn));

/* Parse "A.B.C.D:PORT" (port 0 allowed) into sa. 0, or -1 when malformed. */
int cs__bare_parse_addr(const char *s, struct sockaddr_in *sa);

/* Holding many connections needs many fds: take all we may have. */
void cs__bare_raise_nofile(void);

/* A non-blocking listener on sa; on failure, cs__bare_die(prog, ...).
 * sa is updated to the bound address (the real port for port 0). */
int cs__bare_listen(const char *prog, struct sockaddr_in *sa);

#endif
