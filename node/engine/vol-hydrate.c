/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-hydrate.c: background hydration, the copy of every chunk still on
 * the base into the CoW layer, so that the volume becomes a linear image
 * and its base can be retired.
 *
 * The wish lives in the superblock, not in this agent: `cowctl hydrate`
 * sets DSCOW_COMPAT_HYDRATING (and hydrate_rate) with a durable superblock
 * write, cancel clears it.  Whoever owns the volume and serves it (state
 * ACTIVE, not held) copies while the flag is set: after a restart the
 * agent finds it at open, after a handoff the new owner at takeover.  So
 * it needs no state of its own on disk: the bitmap says what is left.
 *
 * A copy is an engine request of its own type (VR_HYDRATE) for a run of
 * chunks that were clear when it was issued (while clients are busy), or
 * for a window of chunks from a clear one on (idle: its set chunks are
 * skipped).  It takes its chunks exclusive (vol-lock.c), skips those a
 * client filled meanwhile, reads the rest from the base, writes them to
 * the CoW and sets their bits in memory, and is done.  The bits become
 * durable by the ordinary commit (data -> flush -> bitmap -> flush), which
 * hydration asks for once the oldest copy not in a commit is
 * HYD_COMMIT_NS old (hyd_commit), at the end (hyd_finish), and which a
 * drain or a client's commit does anyway.  A bit not yet durable reads
 * as clear after a crash, so that chunk is read from the base, which
 * holds the same data, and the next run copies it again (nothing else is
 * lost).  A commit per copy was two flushes per copy: a client's reads
 * waited behind them (issue 14's p99 target).
 *
 * Yielding: at most HYD_DEPTH copies of at most HYD_BYTES are in flight,
 * one of at most HYD_BYTES_BUSY, HYD_BUSY_GAP_NS apart, while clients are
 * busy (a request in flight or sent in the last HYD_BUSY_NS; a client read
 * of a chunk being copied waits for that copy); the next copy
 * is started from a low-priority loop timer, after the client work of the
 * current dispatch, and no sooner than the --rate limit allows (a token bucket:
 * next_ns advances by each copy's length at the rate).
 *
 * When the scan finds no clear bit and every bit is durable, the
 * superblock gets DSCOW_FLAG_HYDRATED and loses the HYDRATING flag.  A
 * hold (handoff, quorum loss, close) stops new copies; those in flight
 * count in v->in_flight, so the drain waits for them.
 *
 * Owned by the main thread, like the rest of the engine.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "loop.h"
#include "volume-int.h"

#define HYD_BYTES (4096u * 1024u)     /* largest copy */
#define HYD_BYTES_BUSY (256u * 1024u) /* ... while clients have IO */
#define HYD_BUSY_GAP_NS 5000000ull    /* and the pause after each */
#define HYD_BUSY_NS 100000000ull      /* busy: a request this recent */
#define HYD_DEPTH 16u                 /* copies in flight when idle */
#define HYD_RETRY_NS 5000000000ull    /* after a failed copy */
#define HYD_WINDOW_NS 1000000000ull   /* rate measurement */
#define HYD_COMMIT_NS 1000000000ull   /* copies wait this long for a commit */

static void hyd_pump (struct volume *v);

static bool
hyd_wanted (const struct volume *v)
{
  return (v->sb.compat & DSCOW_COMPAT_HYDRATING)
         && !(v->sb.flags & DSCOW_FLAG_HYDRATED);
}

static bool
hyd_may_run (const struct volume *v)
{
  return hyd_wanted (v) && v->state == VOL_STATE_ACTIVE && !v->held
         && vol_lease_ok (v) && v->commit != DSCOW_COMMIT_NONE && v->base
         && !v->hyd.finishing;
}

static void
hyd_timer_fn (void *data)
{
  hyd_pump (data);
}

static void
hyd_schedule (struct volume *v, uint64_t delay_ns)
{
  cowd_timer_arm (&v->hyd.timer, delay_ns, hyd_timer_fn, v);
}

void
hydrate_stop (struct volume *v)
{
  cowd_timer_stop (&v->hyd.timer);
}

/* Start (again) from the first chunk: after open, takeover, resume. */
void
hydrate_kick (struct volume *v)
{
  if (!hyd_wanted (v))
    return;
  v->hyd.cursor = 0;
  v->hyd.win_ns = 0;
  if (!v->hyd.start_ns)
    v->hyd.start_ns = cowd_now_ns ();
  hyd_schedule (v, 0);
}

static void
hyd_measure (struct volume *v)
{
  uint64_t now = cowd_now_ns ();
  if (v->hyd.win_ns == 0)
    {
      v->hyd.win_ns = now;
      v->hyd.win_chunks = v->st.hydrated_chunks;
      return;
    }
  uint64_t dt = now - v->hyd.win_ns;
  if (dt < HYD_WINDOW_NS)
    return;
  v->hyd.rate = (double) (v->st.hydrated_chunks - v->hyd.win_chunks) * v->cs
                * 1e9 / (double) dt;
  v->hyd.win_ns = now;
  v->hyd.win_chunks = v->st.hydrated_chunks;
}

/* Have clients sent requests lately? */
static bool
hyd_busy (const struct volume *v)
{
  return v->in_flight > v->hyd.inflight
         || cowd_now_ns () - v->client_ns < HYD_BUSY_NS;
}

static void
hyd_commit_done (void *opaque, int res)
{
  struct volume *v = opaque;
  v->hyd.committing = false; /* a failure: the bits stay dirty (commit) */
  (void) res;
}

/* A copy is done: commit the copies once the oldest is HYD_COMMIT_NS old,
 * one commit at a time (those done during it wait for the next). */
static void
hyd_commit (struct volume *v)
{
  uint64_t now = cowd_now_ns ();
  if (v->hyd.commit_ns == 0)
    v->hyd.commit_ns = now;
  if (v->hyd.committing || now - v->hyd.commit_ns < HYD_COMMIT_NS)
    return;
  v->hyd.commit_ns = 0;
  v->hyd.committing = commit_internal (v, hyd_commit_done, v) == 0;
}

static void
hyd_done (void *opaque, int res)
{
  struct volume *v = opaque;
  v->hyd.inflight--;
  if (res < 0)
    {
      if (v->hyd.err == 0)
        qb_log (LOG_ERR,
                "volume: %s: hydration: a copy failed: %s; "
                "retrying every %llu s",
                v->name, strerror (-res), HYD_RETRY_NS / 1000000000ull);
      v->hyd.err = res;
      hyd_schedule (v, HYD_RETRY_NS);
      return;
    }
  v->hyd.err = 0;
  hyd_measure (v);
  hyd_commit (v);
  hyd_schedule (v, hyd_busy (v) ? HYD_BUSY_GAP_NS : 0);
}

/* The next chunk whose bit is clear, from the cursor on. */
static uint64_t
hyd_next_clear (struct volume *v)
{
  uint64_t c = v->hyd.cursor;
  while (c < v->nchunks && dscow_bit_test (v->map, c))
    c += dscow_bitmap_run (v->map, c, v->nchunks - c);
  return v->hyd.cursor = c;
}

/* May a copy of len bytes start now?  If not, come back when it may. */
static bool
hyd_throttle (struct volume *v, uint64_t len)
{
  uint32_t limit = v->sb.hydrate_rate;
  if (limit == 0)
    return true;
  uint64_t now = cowd_now_ns ();
  if (now < v->hyd.next_ns)
    {
      hyd_schedule (v, v->hyd.next_ns - now);
      return false;
    }
  if (v->hyd.next_ns + HYD_WINDOW_NS < now)
    v->hyd.next_ns = now; /* no credit saved up from idle time */
  v->hyd.next_ns += len * 1000ull / limit; /* MB/s = bytes per us */
  return true;
}

static int
hyd_issue (struct volume *v, uint64_t c0, uint64_t c1)
{
  struct vreq *rq = calloc (1, sizeof *rq);
  if (!rq)
    return -ENOMEM;
  uint64_t off = c0 * v->cs;
  *rq = (struct vreq){ .v = v,
                       .type = VR_HYDRATE,
                       .off = off,
                       .len
                       = (uint32_t) (c1 * v->cs + vol_chunk_len (v, c1) - off),
                       .c0 = c0,
                       .c1 = c1,
                       .done = hyd_done,
                       .opaque = v };
  v->hyd.cursor = c1 + 1;
  v->hyd.inflight++;
  v->in_flight++;
  v->st.in_flight = v->in_flight;
  v->submitting++; /* an early failure acks from the loop */
  io_start (rq);
  v->submitting--;
  return 0;
}

static void
hyd_flagged (struct volume *v)
{
  v->sb.flags |= DSCOW_FLAG_HYDRATED;
  v->sb.compat &= ~DSCOW_COMPAT_HYDRATING;
  int r = vol_write_super (v, false); /* every bit is durable */
  if (r < 0)
    {
      v->sb.flags &= ~DSCOW_FLAG_HYDRATED;
      v->sb.compat |= DSCOW_COMPAT_HYDRATING;
      hyd_schedule (v, HYD_RETRY_NS);
      return;
    }
  v->hyd.end_ns = cowd_now_ns ();
  qb_log (LOG_INFO,
          "volume: %s: hydrated: every chunk is in the CoW layer "
          "(%" PRIu64 " copied by this agent); the base is no longer needed",
          v->name, v->st.hydrated_chunks);
}

static void
hyd_final_commit_done (void *opaque, int res)
{
  struct volume *v = opaque;
  v->hyd.finishing = false;
  hyd_schedule (v, res < 0 ? HYD_RETRY_NS : 0);
}

/* The scan found nothing clear and no copy is in flight. */
static void
hyd_finish (struct volume *v)
{
  v->hyd.cursor = 0;
  if (v->cow_chunks < v->nchunks)
    {
      hyd_schedule (v, 0); /* a copy failed: go round again */
      return;
    }
  if (!commit_durable (v, 0, v->nchunks - 1))
    {
      /* Bits a client set are not durable yet (commit flush). */
      v->hyd.finishing = commit_internal (v, hyd_final_commit_done, v) == 0;
      if (!v->hyd.finishing)
        hyd_schedule (v, HYD_RETRY_NS);
      return;
    }
  hyd_flagged (v);
}

static unsigned
hyd_depth (const struct volume *v)
{
  return hyd_busy (v) ? 1 : HYD_DEPTH;
}

/* The largest copy: HYD_BYTES, or a tenth of a second at the --rate
 * limit (so a slow hydration goes in small, even steps); a chunk at least. */
static uint64_t
hyd_max_chunks (const struct volume *v)
{
  uint64_t bytes = hyd_busy (v) ? HYD_BYTES_BUSY : HYD_BYTES;
  if (v->sb.hydrate_rate && v->sb.hydrate_rate * 100000ull < bytes)
    bytes = v->sb.hydrate_rate * 100000ull;
  return bytes / v->cs ? bytes / v->cs : 1;
}

static void
hyd_pump (struct volume *v)
{
  while (hyd_may_run (v) && v->hyd.inflight < hyd_depth (v))
    {
      uint64_t c0 = hyd_next_clear (v);
      if (c0 >= v->nchunks)
        {
          if (v->hyd.inflight == 0)
            hyd_finish (v);
          return;
        }
      uint64_t max = hyd_max_chunks (v);
      /* Idle: a window of max chunks from the first clear one, the set
       * chunks in it skipped by the copy (io_start_hydrate), one commit
       * for all its runs; a volume written at random has clear runs of a
       * few chunks, and a commit each made the copy a third of the disk's
       * rate.  Busy: only the clear run, so clients wait for less. */
      uint64_t n = hyd_busy (v) ? dscow_bitmap_run (v->map, c0, v->nchunks - c0)
                                : v->nchunks - c0;
      if (n > max)
        n = max;
      uint64_t clear = 0; /* what the copy moves: the rate counts that */
      for (uint64_t c = c0; c < c0 + n; c++)
        clear += !dscow_bit_test (v->map, c);
      if (!hyd_throttle (v, clear * v->cs))
        return;
      if (hyd_issue (v, c0, c0 + n - 1) < 0)
        {
          hyd_schedule (v, HYD_RETRY_NS);
          return;
        }
    }
}

/* --- the commands --- */

static int
hyd_check_owner (struct volume *v, char *err, size_t errlen)
{
  if (v->commit != DSCOW_COMMIT_NONE)
    return vol_check_serving (v, "the command", err, errlen);
  snprintf (err, errlen,
            "volume %s: a transient volume (commit none) "
            "cannot be hydrated: its bitmap is never written",
            v->name);
  return -1;
}

/* Write the superblock with the new wish, or put the old one back. */
static int
hyd_write_wish (struct volume *v, uint64_t compat, uint32_t rate, char *err,
                size_t errlen)
{
  uint64_t old_compat = v->sb.compat;
  uint32_t old_rate = v->sb.hydrate_rate;
  v->sb.compat = compat;
  v->sb.hydrate_rate = rate;
  int r = vol_write_super (v, false);
  if (r == 0)
    return 0;
  v->sb.compat = old_compat;
  v->sb.hydrate_rate = old_rate;
  snprintf (err, errlen,
            "volume %s: writing the superblock of %s failed: "
            "%s",
            v->name, v->cow->uri, strerror (-r));
  return -1;
}

int
vol_hydrate_start (struct volume *v, uint32_t rate_mbs, char *err,
                   size_t errlen)
{
  if (v->sb.flags & DSCOW_FLAG_HYDRATED)
    {
      snprintf (err, errlen, "volume %s is hydrated already", v->name);
      return -1;
    }
  if (!v->base)
    {
      snprintf (err, errlen, "volume %s has no base to copy from", v->name);
      return -1;
    }
  if (hyd_check_owner (v, err, errlen) < 0)
    return -1;
  if (v->sb.version_minor < 2)
    v->sb.version_minor = 2; /* hydrate_rate is read from minor 2 on */
  if (hyd_write_wish (v, v->sb.compat | DSCOW_COMPAT_HYDRATING, rate_mbs, err,
                      errlen)
      < 0)
    return -1;
  qb_log (LOG_INFO,
          "volume: %s: hydration started (%" PRIu64 " of %" PRIu64
          " chunks to copy, at most %" PRIu32 " MB/s, 0 = unlimited)",
          v->name, v->nchunks - v->cow_chunks, v->nchunks, rate_mbs);
  v->hyd.err = 0;
  v->hyd.next_ns = 0;
  v->hyd.start_ns = 0;
  hydrate_kick (v);
  return 0;
}

int
vol_hydrate_cancel (struct volume *v, char *err, size_t errlen)
{
  if (!hyd_wanted (v))
    {
      snprintf (err, errlen, "volume %s is not being hydrated", v->name);
      return -1;
    }
  if (hyd_check_owner (v, err, errlen) < 0
      || hyd_write_wish (v, v->sb.compat & ~DSCOW_COMPAT_HYDRATING, 0, err,
                         errlen)
             < 0)
    return -1;
  hydrate_stop (v);
  qb_log (LOG_INFO,
          "volume: %s: hydration cancelled with %" PRIu64 " of %" PRIu64
          " chunks in the CoW layer",
          v->name, v->cow_chunks, v->nchunks);
  return 0;
}

void
vol_hydrate_info (const struct volume *v, struct vol_hydrate *hi)
{
  double rate = v->hyd.rate;
  uint64_t now = cowd_now_ns ();
  if (v->hyd.win_ns && now - v->hyd.win_ns > HYD_WINDOW_NS)
    rate = (double) (v->st.hydrated_chunks - v->hyd.win_chunks) * v->cs * 1e9
           / (double) (now - v->hyd.win_ns);
  *hi = (struct vol_hydrate){ .wanted = hyd_wanted (v),
                              .running = hyd_may_run (v),
                              .hydrated = v->sb.flags & DSCOW_FLAG_HYDRATED,
                              .limit_mbs = v->sb.hydrate_rate,
                              .done = v->cow_chunks,
                              .total = v->nchunks,
                              .copied = v->st.hydrated_chunks,
                              .rate_mbs = hyd_may_run (v) ? rate / 1e6 : 0,
                              .eta_s = -1,
                              .error = v->hyd.err };
  if (v->hyd.start_ns)
    hi->elapsed_s
        = (double) ((v->hyd.end_ns ? v->hyd.end_ns : now) - v->hyd.start_ns)
          / 1e9;
  if (hi->rate_mbs > 0)
    hi->eta_s = (double) (hi->total - hi->done) * v->cs / (rate ? rate : 1);
}

int
vol_drop_base (struct volume *v, char *err, size_t errlen)
{
  if (!(v->sb.flags & DSCOW_FLAG_HYDRATED))
    {
      snprintf (err, errlen,
                "volume %s is not hydrated (%" PRIu64 " of %" PRIu64
                " chunks in the CoW layer); it still needs its base",
                v->name, v->cow_chunks, v->nchunks);
      return -1;
    }
  backend_close (v->base);
  v->base = NULL;
  return 0;
}

bool
vol_has_base (const struct volume *v)
{
  return v->base != NULL;
}
