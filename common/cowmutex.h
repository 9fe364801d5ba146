/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/cowmutex.h: a mutex that cowd's loop shares with its threads.
 *
 * The loop may run at a realtime priority (cowd.conf realtime-priority),
 * the threads that do its blocking work never do.  A loop that waits for a
 * lock held by such a thread would wait, at its priority, for a thread
 * every ordinary process on the host can push aside: priority inversion.
 * With priority inheritance the holder runs at the loop's priority until
 * it lets go.  Uncontended, such a mutex costs what any other does (one
 * atomic operation); only a contended one goes to the kernel.
 */
#ifndef COWHERD_COWMUTEX_H
#define COWHERD_COWMUTEX_H

#include <pthread.h>

/* m, of type (PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_RECURSIVE), with
 * priority inheritance: 0 or an errno. */
static inline int
cow_mutex_init (pthread_mutex_t *m, int type)
{
  pthread_mutexattr_t a;
  int r = pthread_mutexattr_init (&a);
  if (r != 0)
    return r;
  if ((r = pthread_mutexattr_settype (&a, type)) == 0
      && (r = pthread_mutexattr_setprotocol (&a, PTHREAD_PRIO_INHERIT)) == 0)
    r = pthread_mutex_init (m, &a);
  pthread_mutexattr_destroy (&a);
  return r;
}

#endif
