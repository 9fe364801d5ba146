/* SPDX-License-Identifier: GPL-2.0-or-later */
/* probe.c: how long cowd's loop goes without turning.
 *
 * Everything cowd does (NBD requests, CPG messages, control commands,
 * applying a state transfer) runs on one qb_loop; work that keeps it for
 * a long time delays every NBD request and may cost the cluster lease.
 * A high-priority timer fires every PROBE_EVERY_MS (50 ms: every 2 ms
 * cost an idle cowd 20% of a CPU); how late a firing is bounds the longest
 * stretch the loop spent in one piece of work since the one before, so
 * the largest lateness seen (the "gap") bounds the loop's worst block.  On a
 * busy machine the gap also counts the time the thread waited for a CPU, so the
 * probe reads the thread's CPU time too: the CPU the loop spent between two
 * firings bounds the work done in one stretch, whoever else runs.  (A
 * blocking system call, an fsync, shows in the gap, not in the CPU time.)
 * `cowctl nodes --json` shows loop.max_gap_ms, loop.max_busy_ms and how
 * many gaps passed 10 ms, and the two maxima as they were when this cowd
 * last became synced with the cluster (sync_gap_ms, sync_busy_ms: what
 * joining cost the loop, before anything else ran); a new largest gap
 * over 10 ms is logged.  It also keeps how long after cowd's main began
 * it last became synced (synced_after_ms), logged then too: what a
 * restart costs before the host serves its volumes again.
 * Cost: one timer per interval (idle cowd: under 1% of a CPU).
 *
 * How much of a gap was the loop's own: the kernel counts the time a
 * thread waited for a CPU while it could run (/proc/thread-self/schedstat,
 * its second field), read at each firing.  A gap less what the loop's
 * thread waited for a CPU since the firing before is the least that was
 * its own (work, or a blocking call): loop.max_own_gap_ms, and
 * sync_own_gap_ms when last synced.  (A lower bound: a wait for a CPU
 * before the firing was due is subtracted too.)  The longest gap's wait
 * is logged with it.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cowlog.h"

#include "clock.h"
#include "cowd.h"
#include "loop.h"

#define PROBE_EVERY_MS 50
#define PROBE_SLOW_MS 10

static struct
{
  uint64_t last_ns; /* the previous firing, 0 before the first */
  uint64_t max_gap_ns;
  uint64_t last_cpu_ns, max_busy_ns;
  uint64_t synced_gap_ns, synced_busy_ns; /* the maxima when last synced */
  uint64_t start_ns, synced_after_ns;     /* main began; synced since */
  uint64_t slow;                          /* gaps over PROBE_SLOW_MS */
  int sched_fd;          /* the loop thread's schedstat, or -1 */
  uint64_t last_wait_ns; /* its run-queue wait at the last firing */
  uint64_t max_own_ns, synced_own_ns; /* gap less the wait, the largest */
  qb_loop_timer_handle timer;
} P = { .sched_fd = -1 };

/* The loop thread's time waiting for a CPU so far (ns), or 0. */
static uint64_t
probe_cpu_wait_ns (void)
{
  char buf[128];
  uint64_t run, wait;
  ssize_t n = P.sched_fd >= 0 ? pread (P.sched_fd, buf, sizeof buf - 1, 0) : -1;
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return sscanf (buf, "%" SCNu64 " %" SCNu64, &run, &wait) == 2 ? wait : 0;
}

/* Count the stretch since the last firing (also when synced, so that
 * the work of the sync itself counts). */
static void
probe_fire_stats (void)
{
  uint64_t now = cowd_now_ns (), cpu = clock_thread_cpu_ns ();
  uint64_t cwait = probe_cpu_wait_ns ();
  if (P.last_ns && cpu - P.last_cpu_ns > P.max_busy_ns)
    P.max_busy_ns = cpu - P.last_cpu_ns;
  P.last_cpu_ns = cpu;
  if (P.last_ns)
    {
      /* How late this firing is: a block of B ms makes it late by up to
       * B ms, whatever the interval. */
      uint64_t every = (uint64_t) PROBE_EVERY_MS * 1000000ull;
      uint64_t gap = now - P.last_ns > every ? now - P.last_ns - every : 0;
      uint64_t waited = cwait - P.last_wait_ns;
      uint64_t own = gap > waited ? gap - waited : 0;
      if (own > P.max_own_ns)
        P.max_own_ns = own;
      if (gap > (uint64_t) PROBE_SLOW_MS * 1000000ull)
        P.slow++;
      if (gap > P.max_gap_ns && gap > (uint64_t) PROBE_SLOW_MS * 1000000ull)
        qb_log (LOG_NOTICE,
                "cowd: the loop did not turn for %.1f ms (its thread "
                "waited %.1f ms for a CPU since the turn before)",
                (double) gap / 1e6, (double) waited / 1e6);
      if (gap > P.max_gap_ns)
        P.max_gap_ns = gap;
    }
  P.last_wait_ns = cwait;
  P.last_ns = now;
}

static void
probe_fire (void *data)
{
  probe_fire_stats ();
  qb_loop_timer_add (cowd_loop (), QB_LOOP_HIGH,
                     (uint64_t) PROBE_EVERY_MS * 1000000ull, NULL, probe_fire,
                     &P.timer);
}

void
probe_start (void)
{
  P.sched_fd = open ("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  probe_fire (NULL);
}

/* Realtime: a loop thread that waits for a CPU behind ordinary processes
 * delays every NBD request and may let its lease run out (the gaps above
 * are mostly such waits on a busy host).  corosync and sanlock run
 * SCHED_RR for the same reason.  Only the loop's thread: SCHED_RESET_ON_FORK
 * makes every thread it starts from then on (the offload threads, the
 * checkpointer, io_uring's workers) and every child (a fence command)
 * start ordinary, so blocking work never competes with the loop at its
 * priority. */
void
probe_realtime_start (void)
{
  if (cowd.realtime_priority == 0)
    return;
  struct sched_param sp = { .sched_priority = (int) cowd.realtime_priority };
  if (sched_setscheduler (0, SCHED_RR | SCHED_RESET_ON_FORK, &sp) < 0)
    {
      qb_log (LOG_WARNING,
              "cowd: cannot run the loop at realtime priority %u (%s): it "
              "runs at ordinary priority",
              cowd.realtime_priority, strerror (errno));
      return;
    }
  qb_log (LOG_INFO, "cowd: the loop runs at realtime priority %u (SCHED_RR)",
          cowd.realtime_priority);
}

int
probe_realtime_priority (void)
{
  struct sched_param sp;
  int policy = sched_getscheduler (0) & ~SCHED_RESET_ON_FORK;
  if ((policy != SCHED_RR && policy != SCHED_FIFO)
      || sched_getparam (0, &sp) < 0)
    return 0;
  return sp.sched_priority;
}

void
probe_mark_start (void)
{
  P.start_ns = cowd_now_ns ();
}

void
probe_mark_synced (void)
{
  probe_fire_stats ();
  P.synced_gap_ns = P.max_gap_ns;
  P.synced_busy_ns = P.max_busy_ns;
  P.synced_own_ns = P.max_own_ns;
  P.synced_after_ns = cowd_now_ns () - P.start_ns;
  qb_log (LOG_INFO, "cowd: synced %.1f ms after it started",
          (double) P.synced_after_ns / 1e6);
}

void
probe_synced (double *gap_ms, double *busy_ms, double *after_ms)
{
  *gap_ms = (double) P.synced_gap_ns / 1e6;
  *busy_ms = (double) P.synced_busy_ns / 1e6;
  *after_ms = (double) P.synced_after_ns / 1e6;
}

void
probe_get (double *max_gap_ms, double *max_busy_ms, uint64_t *slow)
{
  *max_gap_ms = (double) P.max_gap_ns / 1e6;
  *max_busy_ms = (double) P.max_busy_ns / 1e6;
  *slow = P.slow;
}

void
probe_own (double *max_own_ms, double *sync_own_ms)
{
  *max_own_ms = (double) P.max_own_ns / 1e6;
  *sync_own_ms = (double) P.synced_own_ns / 1e6;
}
