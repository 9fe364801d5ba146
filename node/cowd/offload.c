/* SPDX-License-Identifier: GPL-2.0-or-later */
/* offload.c: blocking system calls off cowd's loop.
 *
 * Everything cowd serves runs on one loop, and a call that waits for the
 * disk (a syncfs of the CoW files a batch of creates formatted, an fsync
 * of the store's log) keeps every NBD request of the host waiting as
 * long: bench/scale 10,000 saw the creating host's loop stand still for
 * 196-206 ms at once and more than 10 ms six times during its creates.
 * cowd_offload runs such a call (work) on a thread of its own, then its
 * continuation (done) on the loop, in the order the works finished.
 * work touches only what its caller gave it; done may touch anything.
 * Where no thread can be had, both run at once, in the call: the loop
 * waits, as it did before, and the caller needs no second path.
 *
 * A thread per job, up to cowd.worker_threads at once (cowd.conf
 * worker-threads): a job beyond waits in a queue, and the next thread to
 * finish its work takes it.  Most of the time the jobs are a few a
 * second, each waiting for a disk for milliseconds; but a start re-opens
 * every saved volume at once, and a thousand iSCSI volumes would be a
 * thousand threads and a thousand logins at one target.
 * At stop, cowd_offload_drain waits for the works under way and queued
 * (their continuations do not run: the loop has stopped).
 *
 * A work that must look at the loop's state (the table of volumes: is this
 * device another volume's?) asks the loop with cowd_on_loop and waits for
 * the answer: the question runs between two of the loop's events, so what
 * it checks and what it records for the work (a claim on a device) are
 * one step for every other command.  cowd_offload_drain answers such
 * questions while it waits.
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cowlog.h"
#include "cowmutex.h"
#include "cowthread.h"
#include <qb/qbloop.h>

#include "cowd.h"
#include "loop.h"

struct offload_job
{
  void (*work) (void *data);
  void (*done) (void *data);
  void *data;
  struct offload_job *next;
};

/* A question from a work to the loop (cowd_on_loop). */
struct loop_call
{
  void (*fn) (void *data);
  void *data;
  bool answered;
  struct loop_call *next;
};

static struct
{
  pthread_mutex_t mu;
  pthread_cond_t cv; /* a work ended, a question came or was answered */
  unsigned running;  /* threads */
  struct offload_job *queued, **qtail; /* waiting for a thread */
  struct offload_job *head, **tail;    /* finished, to continue on the loop */
  struct loop_call *calls;             /* questions for the loop */
  int efd;
  pthread_t loop_thread; /* set at the first cowd_offload */
} O = { .mu = PTHREAD_MUTEX_INITIALIZER,
        .cv = PTHREAD_COND_INITIALIZER,
        .efd = -1 };

static void
offload_wake_loop (void)
{
  uint64_t one = 1;
  ssize_t w = write (O.efd, &one, sizeof one);
  (void) w; /* the counter cannot overflow: one per job or question */
}

/* Answer the questions waiting (on the loop's thread). */
static void
offload_answer (void)
{
  pthread_mutex_lock (&O.mu);
  struct loop_call *c = O.calls;
  O.calls = NULL;
  pthread_mutex_unlock (&O.mu);
  while (c)
    {
      struct loop_call *next = c->next;
      c->fn (c->data);
      pthread_mutex_lock (&O.mu);
      c->answered = true; /* c is the asker's: not touched after this */
      pthread_cond_broadcast (&O.cv);
      pthread_mutex_unlock (&O.mu);
      c = next;
    }
}

void
cowd_on_loop (void (*fn) (void *data), void *data)
{
  if (O.efd < 0 || pthread_equal (pthread_self (), O.loop_thread))
    return fn (data); /* a work run in place (no thread could be had) */
  struct loop_call c = { .fn = fn, .data = data };
  pthread_mutex_lock (&O.mu);
  c.next = O.calls;
  O.calls = &c;
  pthread_cond_broadcast (&O.cv); /* cowd_offload_drain answers too */
  pthread_mutex_unlock (&O.mu);
  offload_wake_loop ();
  pthread_mutex_lock (&O.mu);
  while (!c.answered)
    pthread_cond_wait (&O.cv, &O.mu);
  pthread_mutex_unlock (&O.mu);
}

static void *
offload_thread (void *arg)
{
  struct offload_job *j = arg;
  while (j)
    {
      j->work (j->data);
      pthread_mutex_lock (&O.mu);
      j->next = NULL;
      *O.tail = j;
      O.tail = &j->next;
      j = O.queued; /* the next waiting, on this thread */
      if (j && !(O.queued = j->next))
        O.qtail = &O.queued;
      if (!j)
        O.running--;
      pthread_cond_broadcast (&O.cv);
      pthread_mutex_unlock (&O.mu);
      offload_wake_loop ();
    }
  return NULL;
}

static int
offload_dispatch (int fd, int revents, void *data)
{
  uint64_t n;
  (void) revents;
  (void) data;
  if (read (fd, &n, sizeof n) < 0 && errno != EAGAIN)
    return 0;
  offload_answer ();
  pthread_mutex_lock (&O.mu);
  struct offload_job *j = O.head;
  O.head = NULL;
  O.tail = &O.head;
  pthread_mutex_unlock (&O.mu);
  while (j)
    {
      struct offload_job *next = j->next;
      j->done (j->data);
      free (j);
      j = next;
    }
  return 0;
}

static int
offload_start (struct offload_job *j)
{
  if (O.efd < 0)
    {
      /* No thread yet: no one holds it.  The loop waits for it. */
      cow_mutex_init (&O.mu, PTHREAD_MUTEX_NORMAL);
      O.tail = &O.head;
      O.qtail = &O.queued;
      O.loop_thread = pthread_self ();
      O.efd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (O.efd < 0)
        return -1;
      if (qb_loop_poll_add (cowd_loop (), QB_LOOP_HIGH, O.efd, POLLIN, NULL,
                            offload_dispatch)
          != 0)
        {
          close (O.efd);
          O.efd = -1;
          return -1;
        }
    }
  pthread_mutex_lock (&O.mu);
  if (O.running >= cowd.worker_threads)
    {
      j->next = NULL;
      *O.qtail = j;
      O.qtail = &j->next;
      pthread_mutex_unlock (&O.mu);
      return 0;
    }
  pthread_t t;
  O.running++;
  int r = cow_thread_create (&t, true, offload_thread, j);
  if (r != 0)
    O.running--;
  pthread_mutex_unlock (&O.mu);
  return r == 0 ? 0 : -1;
}

void
cowd_offload (void (*work) (void *data), void (*done) (void *data), void *data)
{
  struct offload_job *j = malloc (sizeof *j);
  if (j)
    *j = (struct offload_job){ .work = work, .done = done, .data = data };
  if (j && offload_start (j) == 0)
    return;
  free (j);
  work (data);
  done (data);
}

void
cowd_offload_drain (void)
{
  pthread_mutex_lock (&O.mu);
  while (O.running)
    {
      if (O.calls)
        {
          pthread_mutex_unlock (&O.mu);
          offload_answer ();
          pthread_mutex_lock (&O.mu);
          continue;
        }
      pthread_cond_wait (&O.cv, &O.mu);
    }
  pthread_mutex_unlock (&O.mu);
}
