/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/clock.h: the one clock for leases, timeouts and latency.
 *
 * CLOCK_MONOTONIC in nanoseconds, never the wall clock (a clock step must
 * not expire a lease or a deadline).  Header only, so the cluster layer,
 * the engine and the daemon share it without linking each other.
 */
#ifndef COWHERD_CLOCK_H
#define COWHERD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* CPU time of the calling thread (the loop's), in nanoseconds: what a
 * stretch of work cost, whoever else ran meanwhile. */
static inline uint64_t
clock_thread_cpu_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

#endif /* COWHERD_CLOCK_H */
