/*
 * log.c - stderr records written with one write(2) each, so lines from
 * several threads or processes never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char log_tag[32];

void cs_log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

void cs_log_line(int prio, const char *line)
{
	char buf[4096];
	int n = snprintf(buf, sizeof(buf) - 1, "<%d>%s%s", prio, log_tag, line);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t r = write(STDERR_FILENO, buf, (size_t)n);
	(void)r;
}

void cs_log(int prio, const char *fmt, ...)
{
	char line[4000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	cs_log_line(prio, line);
}
