/* SPDX-License-Identifier: GPL-2.0-or-later */
/* lograte.h: log a failure that repeats once, with a count.
 *
 * A failure that repeats at the rate of the loop (a fenced device refusing
 * every flush of a drain) must not flood the log.  A struct lograte sits
 * beside what fails (one per volume).  The first occurrence of a message
 * is logged at once; the same message with the same error code again within
 * LOGRATE_WINDOW_MS is only counted; the count is logged, with the message,
 * when another message comes, when the window has passed and it happens
 * again, or at lograte_flush (before whatever owns it is freed).
 * Owned by the thread that owns the struct; no locks.
 */
#ifndef COWD_LOGRATE_H
#define COWD_LOGRATE_H

#include <stdint.h>

#define LOGRATE_WINDOW_MS 10000u
#define LOGRATE_MSG 256

struct lograte
{
  int code; /* errno of the first occurrence, 0 = none */
  int priority;
  uint64_t since_ns;     /* first occurrence in this window */
  unsigned repeats;      /* counted, not logged */
  char msg[LOGRATE_MSG]; /* the last message counted */
};

/* Log (or count) one failure: priority as syslog's, code a distinct errno
 * (negative or positive), a printf format. */
void lograte_log (struct lograte *lr, int priority, int code, const char *fmt,
                  ...) __attribute__ ((format (printf, 4, 5)));
/* Log the count of what was only counted, and forget it. */
void lograte_flush (struct lograte *lr);

#endif /* COWD_LOGRATE_H */
