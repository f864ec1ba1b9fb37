/*
 * notify.c - sd_notify(3) from libsystemd, plus the little state the
 * daemon keeps around it: the last STATUS sent and the watchdog interval.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "luabind.h" /* log priorities */
#include "notify.h"

static char last_status[500]; /* "STATUS=" and this fit cs_notify()'s 512 */
static bool failure_logged;
static int watchdog_known; /* 0: not read yet */
static uint64_t watchdog_ms;

bool cs_notify_enabled(void)
{
	const char *s = getenv("NOTIFY_SOCKET");
	return s && *s;
}

void cs_notify(const char *fmt, ...)
{
	if (!cs_notify_enabled())
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int r = sd_notify(0, msg);
	if (r < 0 && !failure_logged) {
		failure_logged = true;
		cs_log(CS_LOG_WARNING, "cosockd: cannot notify systemd through $NOTIFY_SOCKET: %s", strerror(-r));
	}
}

void cs_notify_status(const char *text)
{
	char cut[sizeof(last_status)]; /* what is sent of it, and so compared */
	snprintf(cut, sizeof(cut), "%s", text);
	if (!cs_notify_enabled() || !strcmp(cut, last_status))
		return;
	memcpy(last_status, cut, sizeof(cut));
	cs_notify("STATUS=%s", cut);
}

uint64_t cs_notify_watchdog_ms(void)
{
	if (!watchdog_known) {
		uint64_t usec = 0;
		watchdog_known = 1;
		if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
			watchdog_ms = usec / 1000 ? usec / 1000 : 1;
	}
	return watchdog_ms;
}

void cs_notify_forget(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	watchdog_known = 1;
	watchdog_ms = 0;
}
