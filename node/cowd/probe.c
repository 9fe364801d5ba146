/* SPDX-License-Identifier: GPL-2.0-or-later */
/* probe.c: how long cowd's loop goes without turning.
 *
 * Everything cowd does (NBD requests, CPG messages, control commands,
 * applying a state transfer) runs on one qb_loop; work that keeps it for
 * a long time delays every NBD request and may cost the cluster lease.
 * A high-priority timer fires every PROBE_EVERY_MS; the time between two
 * firings is at least as long as the longest stretch the loop spent in
 * one piece of work in between, so the largest gap seen is an upper bound
 * of the loop's worst block (plus the interval).  `cowctl nodes --json`
 * shows it as loop.max_gap_ms, with how many gaps passed 10 ms; a new
 * largest gap over 10 ms is logged.  Cost: one timer per interval.
 */
#include <config.h>

#include <qb/qblog.h>

#include "cowd.h"
#include "loop.h"

#define PROBE_EVERY_MS 2
#define PROBE_SLOW_MS 10

static struct
{
  uint64_t last_ns;             /* the previous firing, 0 before the first */
  uint64_t max_gap_ns;
  uint64_t slow;                /* gaps over PROBE_SLOW_MS */
  qb_loop_timer_handle timer;
} P;

static void
probe_fire (void *data)
{
  uint64_t now = cowd_now_ns ();
  if (P.last_ns)
    {
      uint64_t gap = now - P.last_ns;
      if (gap > (uint64_t) PROBE_SLOW_MS * 1000000ull)
        P.slow++;
      if (gap > P.max_gap_ns && gap > (uint64_t) PROBE_SLOW_MS * 1000000ull)
        qb_log (LOG_NOTICE, "cowd: the loop did not turn for %.1f ms",
                (double) gap / 1e6);
      if (gap > P.max_gap_ns)
        P.max_gap_ns = gap;
    }
  P.last_ns = now;
  qb_loop_timer_add (cowd_loop (), QB_LOOP_HIGH,
                     (uint64_t) PROBE_EVERY_MS * 1000000ull, NULL, probe_fire,
                     &P.timer);
}

void
probe_start (void)
{
  probe_fire (NULL);
}

void
probe_get (double *max_gap_ms, uint64_t *slow)
{
  *max_gap_ms = (double) P.max_gap_ns / 1e6;
  *slow = P.slow;
}
