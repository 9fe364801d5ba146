/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/cowthread.h: the attributes of a thread cowd starts for its
 * blocking work (an offload, the store's checkpointer, the control
 * channel, a fence job, the loop's watcher).
 *
 * The loop may run at a realtime priority (cowd.conf realtime-priority)
 * and passes it on to what it creates: io_uring's workers, which do the
 * loop's own reads and writes, must not wait behind ordinary processes
 * while the loop waits for them.  The threads of blocking work must
 * never compete with the loop at its priority, so they say so
 * explicitly: ordinary scheduling, whatever their creator's.
 */
#ifndef COWHERD_COWTHREAD_H
#define COWHERD_COWTHREAD_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>

/* *a for a thread of ordinary scheduling (SCHED_OTHER), detached or not:
 * 0 or an errno (then *a needs no destroy). */
static inline int
cow_thread_attr_init (pthread_attr_t *a, bool detached)
{
  struct sched_param sp = { .sched_priority = 0 };
  int r = pthread_attr_init (a);
  if (r != 0)
    return r;
  if ((r = pthread_attr_setinheritsched (a, PTHREAD_EXPLICIT_SCHED)) == 0
      && (r = pthread_attr_setschedpolicy (a, SCHED_OTHER)) == 0
      && (r = pthread_attr_setschedparam (a, &sp)) == 0 && detached)
    r = pthread_attr_setdetachstate (a, PTHREAD_CREATE_DETACHED);
  if (r != 0)
    pthread_attr_destroy (a);
  return r;
}

/* pthread_create of an ordinary thread: 0 or an errno. */
static inline int
cow_thread_create (pthread_t *t, bool detached, void *(*fn) (void *), void *arg)
{
  pthread_attr_t a;
  int r = cow_thread_attr_init (&a, detached);
  if (r != 0)
    return r;
  r = pthread_create (t, &a, fn, arg);
  pthread_attr_destroy (&a);
  return r;
}

#endif
