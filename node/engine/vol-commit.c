/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-commit.c: making bits durable (group commit, pipelined).
 *
 * The ordering rule: a bit may become durable only after the data it
 * points to is durable.  Commits are numbered; commit N runs
 *
 *   snapshot the dirty bitmap blocks (their bits point at data whose
 *   write has completed) into staged[N % 2]  ->  flush the CoW  ->
 *   now commit N-1's bitmap blocks (written before this flush) are
 *   durable: ack N-1's batch  ->  write commit N's blocks
 *
 * and commit N's batch is acked by the flush of commit N+1, or by a flush
 * of its own when nothing else is waiting.  So each batch costs one flush
 * and one bitmap write, and a batch's bitmap write and flush overlap the
 * next batch's data: data -> flush -> bitmap -> flush -> ack, per request,
 * with the second flush shared with the next batch.
 *
 * Requests that need durability (every CoW-faulting write under `sync`,
 * FUA writes and FLUSH under `flush`) wait on v->waiters.  A request whose
 * bits are all already written by the previous commit (or need no block
 * written) is acked by this commit's flush with the previous batch.
 *
 * A failed write or flush fails the batches it covers with EIO; their
 * blocks are marked dirty again and the next commit writes them again.
 * Nothing is acked before its bits are durable, so nothing acked is lost.
 * A failure that repeats (a fenced device refusing every flush) is logged
 * once with a count (lograte.h).
 *
 * Past the lease (vol_lease_ok false) no commit starts: the volume may
 * belong to another host by now, and a bitmap block written over its own
 * would lose its bits.  Waiters stay queued until commit_kick (the lease
 * was confirmed) or commit_fail_waiting (fenced, closing).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "loop.h"
#include "volume-int.h"

static void commit_start (struct volume *v);

void
commit_mark_dirty (struct volume *v, uint64_t chunk)
{
  v->dirty[(chunk / 8) / DSCOW_BITMAP_BLOCK] = true;
}

bool
commit_durable (struct volume *v, uint64_t c0, uint64_t c1)
{
  for (uint64_t c = c0; c <= c1; c++)
    if (!dscow_bit_test (v->dmap, c))
      return false;
  return true;
}

bool
commit_idle (struct volume *v)
{
  return !v->committing && !v->waiters && !v->prev;
}

void
commit_enqueue (struct volume *v, struct vreq *rq)
{
  rq->next = v->waiters;
  v->waiters = rq;
  commit_kick (v);
}

void
commit_kick (struct volume *v)
{
  if (!v->committing && (v->waiters || v->prev) && vol_lease_ok (v))
    commit_start (v);
}

/* A commit of every dirty bit that is no client request (a drain, the
 * end of a hydration); it counts as in flight until done is called. */
int
commit_internal (struct volume *v, vol_done_fn *done, void *opaque)
{
  struct vreq *rq = calloc (1, sizeof *rq);
  if (!rq)
    return -ENOMEM;
  rq->v = v;
  rq->type = VR_FLUSH;
  rq->done = done;
  rq->opaque = opaque;
  v->in_flight++;
  commit_enqueue (v, rq);
  return 0;
}

static void
commit_ack (struct vreq *list, int err)
{
  while (list)
    {
      struct vreq *rq = list;
      list = rq->next;
      if (err && rq->err == 0)
        rq->err = -EIO;
      io_complete (rq);
    }
}

static void
commit_redirty (struct volume *v, unsigned slot)
{
  for (uint64_t i = 0; i < v->ncommit_blocks[slot]; i++)
    v->dirty[v->commit_blocks[slot][i]] = true;
  v->ncommit_blocks[slot] = 0;
}

/* The commit is over: what waits starts the next one, or a last flush
 * finishes this one. */
static void
commit_end (struct volume *v)
{
  v->committing = false;
  if ((v->waiters || v->prev) && vol_lease_ok (v))
    commit_start (v);
  else
    vol_check_drained (v);
}

void
commit_fail_waiting (struct volume *v, int err)
{
  if (v->committing)
    return; /* its completions fail them as they come */
  struct vreq *prev = v->prev, *waiters = v->waiters;
  v->prev = v->waiters = NULL;
  if (v->prev_written)
    commit_redirty (v, (v->seq % 2));
  v->prev_written = false;
  commit_ack (prev, err);
  commit_ack (waiters, err);
}

static void
commit_block_done (void *opaque, int res)
{
  struct volume *v = opaque;
  unsigned slot = v->seq % 2;
  if (res < 0 && v->commit_err == 0)
    v->commit_err = res;
  if (--v->commit_pending > 0)
    return;
  struct vreq *batch = v->batch;
  v->batch = NULL;
  if (v->commit_err)
    {
      lograte_log (&v->commit_lr, LOG_ERR, v->commit_err,
                   "volume: %s: "
                   "writing the bitmap failed: %s",
                   v->name, strerror (-v->commit_err));
      commit_redirty (v, slot);
      commit_ack (batch, v->commit_err);
    }
  else
    {
      v->prev = batch; /* acked by the next flush */
      v->prev_written = true;
    }
  commit_end (v);
}

/* This commit's blocks go out (no FUA: the next flush covers them). */
static void
commit_write_blocks (struct volume *v)
{
  unsigned slot = v->seq % 2;
  v->commit_pending = 1;
  v->commit_err = 0;
  for (uint64_t i = 0; i < v->ncommit_blocks[slot]; i++)
    {
      uint64_t b = v->commit_blocks[slot][i] * DSCOW_BITMAP_BLOCK;
      v->commit_pending++;
      int r = v->cow->ops->write (v->cow, v->staged[slot] + b,
                                  DSCOW_BITMAP_OFFSET + b, DSCOW_BITMAP_BLOCK,
                                  BK_NOCACHE, commit_block_done, v);
      if (r < 0)
        {
          v->commit_pending--;
          if (v->commit_err == 0)
            v->commit_err = r;
        }
    }
  commit_block_done (v, 0);
}

/* A batch is durable: how long since its commit started. */
static void
commit_note_latency (struct volume *v, unsigned slot)
{
  uint64_t ns = cowd_now_ns () - v->commit_t0[slot];
  unsigned b = 0;
  for (uint64_t us = ns / 1000; us && b < VOL_HIST_BUCKETS - 1; us >>= 1)
    b++;
  v->st.commit_hist[b]++;
  v->st.commit_ns_sum += ns;
}

static void
commit_flush_done (void *opaque, int res)
{
  struct volume *v = opaque;
  unsigned slot = v->seq % 2, pslot = slot ^ 1;
  struct vreq *prev = v->prev;
  v->prev = NULL;
  if (res < 0)
    {
      lograte_log (&v->commit_lr, LOG_ERR, res,
                   "volume: %s: flushing the "
                   "CoW device failed: %s",
                   v->name, strerror (-res));
      if (v->prev_written)
        commit_redirty (v, pslot);
      commit_redirty (v, slot);
      v->prev_written = false;
      commit_ack (prev, res);
      struct vreq *batch = v->batch;
      v->batch = NULL;
      commit_ack (batch, res);
      commit_end (v);
      return;
    }
  /* The previous commit's blocks are durable now. */
  if (v->prev_written)
    {
      for (uint64_t i = 0; i < v->ncommit_blocks[pslot]; i++)
        {
          uint64_t b = v->commit_blocks[pslot][i] * DSCOW_BITMAP_BLOCK;
          memcpy (v->dmap + b, v->staged[pslot] + b, DSCOW_BITMAP_BLOCK);
        }
      v->ncommit_blocks[pslot] = 0;
      v->prev_written = false;
      v->generation++;
      v->st.commits++;
    }
  if (prev)
    commit_note_latency (v, pslot);
  commit_ack (prev, 0);
  if (v->ncommit_blocks[slot] > 0)
    {
      commit_write_blocks (v);
      return;
    }
  /* Nothing of ours to write: our bits were durable or in prev. */
  struct vreq *batch = v->batch;
  v->batch = NULL;
  if (batch)
    commit_note_latency (v, slot);
  commit_ack (batch, 0);
  commit_end (v);
}

#ifdef COWD_CRASH_BUG_NO_DATA_FLUSH
static void
commit_skip_flush (void *data)
{
  commit_flush_done (data, 0);
}
#endif

static void
commit_start (struct volume *v)
{
  v->committing = true;
  v->seq++;
  unsigned slot = v->seq % 2;
  v->commit_t0[slot] = cowd_now_ns ();
  v->batch = v->waiters;
  v->waiters = NULL;
  v->ncommit_blocks[slot] = 0;
  bool meta = v->commit != DSCOW_COMMIT_NONE;
  for (uint64_t b = 0; meta && b < v->nblocks; b++)
    {
      if (!v->dirty[b])
        continue;
      v->dirty[b] = false;
      memcpy (v->staged[slot] + b * DSCOW_BITMAP_BLOCK,
              v->map + b * DSCOW_BITMAP_BLOCK, DSCOW_BITMAP_BLOCK);
      v->commit_blocks[slot][v->ncommit_blocks[slot]++] = b;
    }
  for (struct vreq *rq = v->batch; rq; rq = rq->next)
    v->st.commit_faults++;
#ifdef COWD_CRASH_BUG_NO_DATA_FLUSH
  /* Built this way only by tests/crash, to show its checker catches the
   * dm-clone bug: the bitmap goes out before its data is durable. */
  if (cowd_defer (commit_skip_flush, v) == 0)
    return;
#endif
  int r = v->cow->ops->flush (v->cow, commit_flush_done, v);
  if (r < 0)
    commit_flush_done (v, r);
}

static void
commit_cow_flush_done (void *opaque, int res)
{
  struct vreq *rq = opaque;
  if (res < 0 && rq->err == 0)
    rq->err = res;
  io_complete (rq);
}

/* FUA or FLUSH where no bit needs committing: the data only. */
void
commit_cow_flush (struct vreq *rq)
{
  int r = rq->v->cow->ops->flush (rq->v->cow, commit_cow_flush_done, rq);
  if (r < 0)
    {
      rq->err = r;
      io_complete (rq);
    }
}
