/*
 * listeners.h - the listening sockets the daemon itself keeps.
 *
 * Two kinds: the sockets systemd passed (socket activation, LISTEN_FDS),
 * which a script's bind adopts instead of binding; and, in a master, one
 * SO_REUSEPORT socket per address and worker slot, bound on a worker's
 * first request and kept, so that slot N of every later generation accepts
 * from the same socket: a reload never closes a listening socket and no
 * connection is refused. One socket per slot, not one shared by all: the
 * kernel then spreads connections evenly, where a shared queue goes to
 * whichever worker's accept is armed first (with io_uring, nearly always
 * the same one).
 *
 * Rules:
 *  - A kept socket is lent, never given: callers dup it or pass it on
 *    (SCM_RIGHTS); only this module closes it.
 *  - Port 0 asks for a fresh port each time: such sockets are bound for
 *    the caller alone and not kept.
 *  - When the worker of a slot dies, the sockets of that slot close (what
 *    they queued is reset, as when a worker's own socket closed), so that
 *    the kernel sends new connections to the slots that live; the
 *    replacement binds anew.
 *  - Sockets from systemd are kept until the daemon exits. Slot 1 uses one
 *    itself; other slots get a SO_REUSEPORT sibling on its address when
 *    systemd made it with ReusePort=yes, and share it otherwise.
 */
#ifndef CS_LISTENERS_H
#define CS_LISTENERS_H

#include <stdbool.h>

#include "luabind.h" /* struct cs_listen_req */

typedef struct cs_listeners cs_listeners;

/* Take the sockets systemd passed to this process (they are then no
 * longer in the environment) and log each. NULL on out of memory. */
cs_listeners *cs_listeners_create(void);
/* Close every socket kept here, systemd's included, and free ls (NULL is
 * fine). */
void cs_listeners_destroy(cs_listeners *ls);

/* The socket for req from worker slot (1..N; 0 in a single process): a
 * systemd socket it matches (by fdname, else by port and address) or its
 * sibling for slot, else the one kept for (address, slot), else a new one
 * (kept when slot > 0 and the port is not 0). Returns an fd and sets *kept
 * (the fd is lent: do not close it), or returns a fresh fd the caller owns
 * (*kept false), or -errno. generation marks kept sockets as still wanted
 * (see cs_listeners_retire). */
int cs_listeners_get(cs_listeners *ls, const struct cs_listen_req *req, unsigned slot, unsigned generation,
		     bool *kept);

/* Close the kept sockets that generation made and no other generation
 * asked for since (its reload failed: nobody will accept from them). */
void cs_listeners_abandon(cs_listeners *ls, unsigned generation);

/* Close the kept sockets of slot (its worker died and no other worker of
 * that slot holds them). */
void cs_listeners_drop_slot(cs_listeners *ls, unsigned slot);

/* Close the kept sockets no worker of generation or later asked for, and
 * those of slots above slots (a reload whose scripts no longer listen
 * there, or that shrank the workers). */
void cs_listeners_retire(cs_listeners *ls, unsigned generation, unsigned slots);

/* Log a warning for each systemd socket no bind has adopted. */
void cs_listeners_warn_unadopted(cs_listeners *ls);

/* A listen source for a single process (no master): systemd's sockets
 * are adopted (as dups, *shared set), anything else is bound here for the
 * caller alone (without SO_REUSEPORT). */
int cs_listeners_open_local(void *ls, const struct cs_listen_req *req, bool *shared);

#endif
