/*
 * log.h - one record per line on stderr, prefixed with its sd-daemon
 * priority ("<6>"), which journald and our tests both read.
 */
#ifndef CS_LOG_H
#define CS_LOG_H

void cs_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Put tag (e.g. "[worker 3] ") in front of every record of this process
 * from now on; NULL or "" for none. */
void cs_log_set_tag(const char *tag);
/* A preformatted record (newlines are not expected). */
void cs_log_line(int prio, const char *line);

#endif
