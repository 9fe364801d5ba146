/* vol-commit.c: making bits durable (group commit).
 *
 * The ordering rule: a bit may become durable only after the data it
 * points to is durable.  One commit therefore runs
 *
 *   snapshot the dirty bitmap blocks (their bits point at data whose
 *   write has completed)  ->  flush the CoW  ->  write those blocks  ->
 *   flush the CoW (or write the only block with FUA)  ->  ack the batch
 *
 * Requests that need durability (every CoW-faulting write under `sync`,
 * FUA writes and FLUSH under `flush`) wait on v->waiters.  When no commit
 * runs, the first waiter starts one at once; while one runs, newcomers
 * gather and the next commit takes them all.  Under load one bitmap write
 * and two flushes cover every fault in flight, and the next batch's data
 * writes overlap the running batch's flushes.
 *
 * A failed commit fails its batch with the error; the blocks stay dirty
 * and the next commit writes them again.  Nothing is acked before its
 * bits are durable, so nothing acked is lost.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <qb/qblog.h>

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
  return !v->committing && !v->waiters;
}

void
commit_enqueue (struct volume *v, struct vreq *rq)
{
  rq->next = v->waiters;
  v->waiters = rq;
  if (!v->committing)
    commit_start (v);
}

static void
commit_end (struct volume *v, int err)
{
  if (err == 0)
    {
      for (uint64_t i = 0; i < v->ncommit_blocks; i++)
        {
          uint64_t b = v->commit_blocks[i] * DSCOW_BITMAP_BLOCK;
          memcpy (v->dmap + b, v->staged + b, DSCOW_BITMAP_BLOCK);
        }
      v->generation++;
      v->st.commits++;
    }
  else
    {
      qb_log (LOG_ERR, "volume: %s: bitmap commit failed: %s", v->name,
              strerror (-err));
      for (uint64_t i = 0; i < v->ncommit_blocks; i++)
        v->dirty[v->commit_blocks[i]] = true;
    }
  struct vreq *batch = v->batch;
  v->batch = NULL;
  v->committing = false;
  while (batch)
    {
      struct vreq *rq = batch;
      batch = rq->next;
      if (err && rq->err == 0)
        rq->err = -EIO;
      io_complete (rq);
    }
  /* An ack above may have started the next commit already. */
  if (v->waiters && !v->committing)
    commit_start (v);
  else if (!v->committing)
    vol_check_drained (v);
}

static void
commit_flush2_done (void *opaque, int res)
{
  commit_end (opaque, res);
}

static void
commit_block_done (void *opaque, int res)
{
  struct volume *v = opaque;
  if (res < 0 && v->commit_err == 0)
    v->commit_err = res;
  if (--v->commit_pending > 0)
    return;
  if (v->commit_err || v->ncommit_blocks == 1)
    {
      commit_end (v, v->commit_err);
      return;
    }
  int r = v->cow->ops->flush (v->cow, commit_flush2_done, v);
  if (r < 0)
    commit_end (v, r);
}

/* Data is durable: write the staged blocks.  A single block goes with
 * FUA, which saves the second flush. */
static void
commit_write_blocks (struct volume *v)
{
  unsigned flags = v->ncommit_blocks == 1 ? BK_FUA : 0;
  v->commit_pending = 1;
  for (uint64_t i = 0; i < v->ncommit_blocks; i++)
    {
      uint64_t b = v->commit_blocks[i] * DSCOW_BITMAP_BLOCK;
      v->commit_pending++;
      int r = v->cow->ops->write (v->cow, v->staged + b,
                                  DSCOW_BITMAP_OFFSET + b, DSCOW_BITMAP_BLOCK,
                                  flags, commit_block_done, v);
      if (r < 0)
        {
          v->commit_pending--;
          if (v->commit_err == 0)
            v->commit_err = r;
        }
    }
  commit_block_done (v, 0);
}

static void
commit_flush1_done (void *opaque, int res)
{
  struct volume *v = opaque;
  if (res < 0)
    commit_end (v, res);
  else if (v->ncommit_blocks == 0)
    commit_end (v, 0);
  else
    commit_write_blocks (v);
}

static void
commit_start (struct volume *v)
{
  v->committing = true;
  v->batch = v->waiters;
  v->waiters = NULL;
  v->commit_err = 0;
  v->ncommit_blocks = 0;
  bool meta = v->commit != DSCOW_COMMIT_NONE;
  for (uint64_t b = 0; meta && b < v->nblocks; b++)
    {
      if (!v->dirty[b])
        continue;
      v->dirty[b] = false;
      memcpy (v->staged + b * DSCOW_BITMAP_BLOCK,
              v->map + b * DSCOW_BITMAP_BLOCK, DSCOW_BITMAP_BLOCK);
      v->commit_blocks[v->ncommit_blocks++] = b;
    }
  for (struct vreq *rq = v->batch; rq; rq = rq->next)
    v->st.commit_faults++;
  int r = v->cow->ops->flush (v->cow, commit_flush1_done, v);
  if (r < 0)
    commit_end (v, r);
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
