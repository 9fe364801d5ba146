/* SPDX-License-Identifier: GPL-2.0-or-later */
/* lograte.c: a repeated failure logged once, with a count (lograte.h). */
#include <config.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cowlog.h"

#include "loop.h"
#include "lograte.h"

void
lograte_flush (struct lograte *lr)
{
  if (lr->repeats)
    qb_log (lr->priority, "%s (repeated %u more times in %.1f s)", lr->msg,
            lr->repeats, (double) (cowd_now_ns () - lr->since_ns) / 1e9);
  lr->repeats = 0;
  lr->code = 0;
}

void
lograte_log (struct lograte *lr, int priority, int code, const char *fmt, ...)
{
  uint64_t now = cowd_now_ns ();
  char msg[LOGRATE_MSG];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  bool same = lr->code == code && code != 0 && strcmp (msg, lr->msg) == 0
              && now - lr->since_ns < (uint64_t) LOGRATE_WINDOW_MS * 1000000ull;
  if (!same)
    {
      lograte_flush (lr);
      qb_log (priority, "%s", msg);
      lr->code = code;
      lr->priority = priority;
      lr->since_ns = now;
    }
  else
    lr->repeats++;
  snprintf (lr->msg, sizeof lr->msg, "%s", msg);
}
