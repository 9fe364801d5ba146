/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/cowlog.h: qb_log, one message at a time across cowd's threads.
 *
 * libqb's logger takes no lock: it guards against re-entry with one
 * process-wide flag, set by compare-and-swap, and a message logged while
 * another thread is inside the logger is dropped without a trace.  cowd
 * logs from its loop and from the threads that run blocking work off it
 * (a create's formats, an iSCSI login there), so a line of either could
 * be lost.  Every file of the daemon includes this header instead of
 * <qb/qblog.h>: its qb_log holds one mutex around the call, so the second
 * message waits for the first (a few microseconds: a formatted line
 * written to a file) instead of vanishing.  The mutex is recursive, for a
 * log target that logs, and inherits priority (cowmutex.h): the loop may
 * be realtime, the other threads are not.  It and its one-time set-up are
 * defined here, weak, so that every program and test that includes the
 * header shares one without another file to link.
 * tests/unit/check_log.c counts the messages of two threads.
 */
#ifndef COWHERD_COWLOG_H
#define COWHERD_COWLOG_H

#include <pthread.h>

#include <qb/qblog.h>

#include "cowmutex.h"

__attribute__ ((weak)) pthread_mutex_t cowlog_mutex;
__attribute__ ((weak)) pthread_once_t cowlog_once = PTHREAD_ONCE_INIT;
void cowlog_init (void);
__attribute__ ((weak)) void
cowlog_init (void)
{
  if (cow_mutex_init (&cowlog_mutex, PTHREAD_MUTEX_RECURSIVE) != 0)
    {
      /* No priority inheritance to be had: recursive all the same. */
      pthread_mutex_t r = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
      cowlog_mutex = r;
    }
}

#undef qb_log
#define qb_log(priority, fmt, args...)                                         \
  do                                                                           \
    {                                                                          \
      pthread_once (&cowlog_once, cowlog_init);                                \
      pthread_mutex_lock (&cowlog_mutex);                                      \
      qb_logt (priority, 0, fmt, ##args);                                      \
      pthread_mutex_unlock (&cowlog_mutex);                                    \
    }                                                                          \
  while (0)

#endif
