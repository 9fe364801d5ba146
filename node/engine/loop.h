/* SPDX-License-Identifier: GPL-2.0-or-later */
/* loop.h: the engine's single event loop (libqb's qb_loop), its clock,
 * deferred calls and batches.  The program creates the loop and hands it
 * to the engine with cowd_loop_set() before anything is opened; see
 * loop.c and defer.c. */
#ifndef COWD_LOOP_H
#define COWD_LOOP_H

#include <qb/qbloop.h>

#include <stdbool.h>
#include <stdint.h>

qb_loop_t *cowd_loop (void);

/* CLOCK_MONOTONIC in nanoseconds: deadlines, leases and latencies. */
uint64_t cowd_now_ns (void);
void cowd_loop_set (qb_loop_t *l);

/* Call fn(data) from the main loop soon (next wakeup), never from inside
 * the caller.  Returns 0 or -errno.  See defer.c. */
int cowd_defer (void (*fn) (void *data), void *data);
/* Make the loop's wakeup descriptor for cowd_defer now (it is made at the
 * first cowd_defer otherwise).  Returns 0 or -errno. */
int cowd_defer_init (void);

/* Batches: what one dispatch of the loop generates (io_uring submissions,
 * NBD replies) goes out once, at its end, in one system call each.
 * cowd_at_batch_end runs fn(data) when the outermost batch ends, or at
 * once outside a batch; callers keep their own flag against queueing the
 * same work twice.  Batches nest. */
void cowd_batch_begin (void);
void cowd_batch_end (void);
void cowd_at_batch_end (void (*fn) (void *data), void *data);

/* A one-shot timer of low priority that is pending at most once: arming a
 * pending one does nothing, stopping is safe in any state, and fn(data)
 * runs from the loop with the timer no longer pending (it may arm it
 * again).  Zero-initialised is stopped.  Returns 0 or -1 (not armed). */
struct cowd_timer
{
  qb_loop_timer_handle handle;
  bool armed;
  void (*fn) (void *data);
  void *data;
};
int cowd_timer_arm (struct cowd_timer *t, uint64_t delay_ns,
                    void (*fn) (void *data), void *data);
void cowd_timer_stop (struct cowd_timer *t);

/* I/O that must not wait behind long work.  The descriptors of NBD
 * connections and of the backends' completions are added to the loop
 * (QB_LOOP_HIGH) through these, which also keep them in a set that
 * cowd_io_waiting asks without blocking: is a request, a reply or a
 * completion ready now?  Work that runs in slices of the loop (a turn of
 * CPG messages, a state transfer's batch, a batch of creates) asks it
 * between two pieces and ends its slice early when it is true, so I/O
 * waits for one piece, not for the slice.  cowd_io_yields counts the true
 * answers.  The add, mod and del return what qb_loop's do. */
int cowd_io_poll_add (int fd, int32_t events, void *data,
                      qb_loop_poll_dispatch_fn fn);
int cowd_io_poll_mod (int fd, int32_t events, void *data,
                      qb_loop_poll_dispatch_fn fn);
int cowd_io_poll_del (int fd);
bool cowd_io_waiting (void);
uint64_t cowd_io_yields (void);

#endif
