/*
 * notify.h - what systemd hears from the daemon (sd_notify: READY, STATUS,
 * WATCHDOG, RELOADING, STOPPING). One process speaks: the master, or the
 * single process when there is none; workers forget the socket.
 */
#ifndef CS_NOTIFY_H
#define CS_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Send one or more "KEY=value" lines (newline-separated). A no-op without
 * NOTIFY_SOCKET; a failure to send is logged once. */
void cs_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Send STATUS=text, unless it is the text sent last. */
void cs_notify_status(const char *text);

/* The watchdog interval systemd asked for (WATCHDOG_USEC, for this pid),
 * in milliseconds; 0 when there is none. Read once, at the first call. */
uint64_t cs_notify_watchdog_ms(void);

/* Whether NOTIFY_SOCKET is set. */
bool cs_notify_enabled(void);

/* In a worker: drop NOTIFY_SOCKET and WATCHDOG_* from the environment so
 * only the master reports, and scripts' children do not inherit them. */
void cs_notify_forget(void);

#endif
