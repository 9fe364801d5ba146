/* SPDX-License-Identifier: GPL-2.0-or-later */
/* loop.h: the engine's single event loop (libqb's qb_loop), its clock,
 * deferred calls and batches.  The program creates the loop and hands it
 * to the engine with cowd_loop_set() before anything is opened; see
 * loop.c and defer.c. */
#ifndef COWD_LOOP_H
#define COWD_LOOP_H

#include <qb/qbloop.h>

#include <stdint.h>

qb_loop_t *cowd_loop (void);

/* CLOCK_MONOTONIC in nanoseconds: deadlines, leases and latencies. */
uint64_t cowd_now_ns (void);
void cowd_loop_set (qb_loop_t *l);

/* Call fn(data) from the main loop soon (next wakeup), never from inside
 * the caller.  Returns 0 or -errno.  See defer.c. */
int cowd_defer (void (*fn) (void *data), void *data);

/* Batches: what one dispatch of the loop generates (io_uring submissions,
 * NBD replies) goes out once, at its end, in one system call each.
 * cowd_at_batch_end runs fn(data) when the outermost batch ends, or at
 * once outside a batch; callers keep their own flag against queueing the
 * same work twice.  Batches nest. */
void cowd_batch_begin (void);
void cowd_batch_end (void);
void cowd_at_batch_end (void (*fn) (void *data), void *data);

#endif
