/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-merge.c: online merge of the top layer into the frozen layer below
 * it (L), so that chains do not grow without end.
 *
 * What the volume reads never changes during a merge: every chunk the
 * top has shadows L's, so writing the top's chunks into L's data area is
 * invisible until the end.  Steps:
 *
 *   start     L's superblock gets FLAG_MERGING (durable): from now on L
 *             no longer holds its snapshot (its chunks are being replaced)
 *             and a rollback to it is refused.
 *   copy      while the volume serves, from a low-priority loop timer: the
 *             next run of the top's chunks (at most MRG_BYTES) is read from
 *             the top and written to L at the same offset, and L's bits set
 *             in memory.  A chunk of the top written again after it was
 *             copied (a client, a hydration fill, a trim) is marked in
 *             `redo` when that write completes, and copied again.
 *   finish    the volume is held and drained; the redo chunks are copied;
 *             L's data is flushed, then its whole bitmap written and
 *             flushed; then L's superblock loses FROZEN, MERGING and its
 *             link up and becomes the top: the commit, one superblock
 *             write.  The old top is freed.
 *
 * A crash before the commit leaves the old chain (L's extra bits point at
 * the top's data, which the top shadows), marked MERGING; `cowctl merge`
 * starts again from the first chunk.  After it, the new chain.  The copy
 * uses the backends' blocking calls, at most MRG_BYTES per loop turn, so
 * clients wait at most one such copy.
 *
 * Owned by the main thread, like the rest of the engine.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qblog.h>

#include "loop.h"
#include "volume-int.h"

#define MRG_BYTES (1024u * 1024u) /* one copy step at most */

static void mrg_pump (struct volume *v);

static void
mrg_timer_fn (void *data)
{
  mrg_pump (data);
}

static void
mrg_schedule (struct volume *v)
{
  cowd_timer_arm (&v->mrg.timer, 0, mrg_timer_fn, v);
}

void
merge_stop (struct volume *v)
{
  cowd_timer_stop (&v->mrg.timer);
  free (v->mrg.redo);
  v->mrg.redo = NULL;
  free (v->mrg.freed);
  v->mrg.freed = NULL;
  v->mrg.active = v->mrg.finishing = false;
}

void
merge_kick (struct volume *v)
{
  if (v->mrg.active && !v->mrg.finishing)
    mrg_schedule (v);
}

void
merge_note_write (struct volume *v, uint64_t c0, uint64_t c1)
{
  if (!v->mrg.active)
    return;
  for (uint64_t c = c0; c <= c1; c++)
    dscow_bit_set (v->mrg.redo, c);
}

static void
mrg_fail (struct volume *v, const char *what, int r)
{
  qb_log (LOG_ERR,
          "volume: %s: merge: %s failed: %s; the chain is as it "
          "was; cowctl merge starts it again",
          v->name, what, strerror (-r));
  v->mrg.err = r;
  v->mrg.active = v->mrg.finishing = false;
  free (v->mrg.redo);
  v->mrg.redo = NULL;
}

/* Copy chunks c .. c + n - 1 of the top into L; set L's bits. */
static int
mrg_copy (struct volume *v, uint64_t c, uint64_t n, char *buf)
{
  struct vol_layer *l = &v->lower[v->nlower - 1];
  uint64_t off = c * v->cs;
  uint64_t len = (c + n - 1) * v->cs + vol_chunk_len (v, c + n - 1) - off;
  for (uint64_t i = c; i < c + n; i++)
    dscow_bit_clear (v->mrg.redo, i);
  int r = backend_pread_sync (v->cow, buf, v->cow_base + off, len);
  if (r == 0)
    r = backend_pwrite_sync (l->bk, buf, v->cow_base + off, len, 0);
  if (r < 0)
    return r;
  for (uint64_t i = c; i < c + n; i++)
    if (!dscow_bit_test (l->map, i))
      {
        dscow_bit_set (l->map, i);
        l->chunks++;
      }
  v->mrg.copied += n;
  return 0;
}

/* The next run, from *c on, of chunks marked in sel that the top has, at
 * most max long: its length (0: none left); *c moves to its start. */
static uint64_t
mrg_next_run (struct volume *v, const uint8_t *sel, uint64_t *c, uint64_t max)
{
  while (*c < v->nchunks)
    {
      if (!dscow_bit_test (sel, *c))
        *c += dscow_bitmap_run (sel, *c, v->nchunks - *c);
      else if (!dscow_bit_test (v->map, *c))
        (*c)++;
      else
        break;
    }
  uint64_t n = 0;
  while (*c + n < v->nchunks && n < max && dscow_bit_test (sel, *c + n)
         && dscow_bit_test (v->map, *c + n))
    n++;
  return n;
}

static void mrg_finish (void *opaque, int res);

static void
mrg_pump (struct volume *v)
{
  if (!v->mrg.active || v->mrg.finishing || v->held
      || v->state != VOL_STATE_ACTIVE || !vol_lease_ok (v))
    return; /* merge_kick starts it again */
  char *buf = vol_alloc_aligned (MRG_BYTES);
  uint64_t n = mrg_next_run (v, v->map, &v->mrg.cursor, MRG_BYTES / v->cs);
  int r = buf ? 0 : -ENOMEM;
  if (r == 0 && n)
    r = mrg_copy (v, v->mrg.cursor, n, buf);
  free (buf);
  if (r < 0)
    return mrg_fail (v, "copying from the top", r);
  v->mrg.cursor += n;
  if (n && v->mrg.copied == n)
    vol_crash_point ("merge-copying");
  if (n)
    return mrg_schedule (v);
  v->mrg.finishing = true; /* every chunk copied once: finish */
  if (vol_hold_op (v, mrg_finish, v) < 0)
    v->mrg.finishing = false; /* held by someone else: merge_kick */
}

/* Held: the chunks written again, then L's bitmap, flushed. */
static int
mrg_final_copy (struct volume *v, const char **what)
{
  struct vol_layer *l = &v->lower[v->nlower - 1];
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK, c = 0, n;
  char *buf = vol_alloc_aligned (MRG_BYTES);
  int r = buf ? 0 : -ENOMEM;
  *what = "copying the chunks written meanwhile";
  while (r == 0 && (n = mrg_next_run (v, v->mrg.redo, &c, MRG_BYTES / v->cs)))
    {
      r = mrg_copy (v, c, n, buf);
      c += n;
    }
  free (buf);
  vol_crash_point ("merge-copied");
  if (r == 0
      && (*what = "flushing the lower layer", r = backend_flush_sync (l->bk))
             == 0)
    {
      *what = "writing the lower layer's bitmap";
      r = backend_pwrite_sync (l->bk, l->map, DSCOW_BITMAP_OFFSET, bm, 0);
    }
  if (r == 0)
    vol_crash_point ("merge-bitmap");
  return r;
}

/* The commit: L becomes the top (its superblock flushes its bitmap). */
static int
mrg_commit (struct volume *v)
{
  struct vol_layer *l = &v->lower[v->nlower - 1];
  struct dscow_super old = l->sb;
  chain_unlink_up (&l->sb);
  l->sb.flags &= ~(DSCOW_FLAG_MERGING | DSCOW_FLAG_HYDRATED);
  l->sb.state = DSCOW_STATE_DIRTY;
  l->sb.epoch = v->sb.epoch;
  l->sb.owner_node = v->sb.owner_node;
  l->sb.commit = v->sb.commit;
  l->sb.compat = v->sb.compat;
  l->sb.hydrate_rate = v->sb.hydrate_rate;
  int r = chain_put_super (l->bk, &l->sb);
  if (r < 0)
    l->sb = old;
  return r;
}

/* Committed: in memory too, L is the top now; the old top is freed. */
static void
mrg_pop (struct volume *v)
{
  struct vol_layer *l = &v->lower[--v->nlower];
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK;
  free (v->mrg.freed);
  v->mrg.freed = strdup (v->cow->uri);
  backend_close (v->cow);
  free (v->map);
  v->cow = l->bk;
  v->sb = l->sb;
  v->map = l->map;
  memcpy (v->dmap, v->map, bm);
  memset (v->dirty, 0, v->nblocks * sizeof *v->dirty);
  v->cow_chunks = l->chunks;
  v->generation = v->sb.generation;
  *l = (struct vol_layer){ 0 };
}

static void
mrg_finish (void *opaque, int res)
{
  struct volume *v = opaque;
  const char *what = "draining the volume";
  int r = res;
  if (r == 0 && (r = mrg_final_copy (v, &what)) == 0)
    {
      what = "writing the lower layer's superblock";
      r = mrg_commit (v);
    }
  if (r < 0)
    {
      mrg_fail (v, what, r);
      vol_resume_op (v);
      return;
    }
  vol_crash_point ("merge-committed");
  mrg_pop (v);
  qb_log (LOG_INFO,
          "volume: %s: merge done: %" PRIu64 " chunks copied; "
          "the top is %s now, %s is freed",
          v->name, v->mrg.copied, v->cow->uri,
          v->mrg.freed ? v->mrg.freed : "?");
  free (v->mrg.redo);
  v->mrg.redo = NULL;
  v->mrg.active = v->mrg.finishing = false;
  vol_resume_op (v);
}

int
vol_merge_start (struct volume *v, char *err, size_t errlen)
{
  const char *why = NULL;
  if (v->nlower == 0)
    why = "it has no snapshot layer below its top";
  else if (v->mrg.active)
    why = "a merge runs already";
  else if (v->state != VOL_STATE_ACTIVE || v->held)
    why = "it is not active on this host";
  else if (v->commit == DSCOW_COMMIT_NONE)
    why = "it is transient (commit none)";
  if (why)
    {
      snprintf (err, errlen, "volume %s: no merge: %s", v->name, why);
      return v->nlower == 0  ? -COW_E_NO_SUCH_SNAPSHOT
             : v->mrg.active ? -COW_E_BUSY
                             : -COW_E_USAGE;
    }
  struct vol_layer *l = &v->lower[v->nlower - 1];
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK;
  if (!(v->mrg.redo = vol_alloc_aligned (bm)))
    return snprintf (err, errlen, "volume %s: out of memory", v->name),
           -COW_E_INTERNAL;
  l->sb.flags |= DSCOW_FLAG_MERGING;
  int r = chain_put_super (l->bk, &l->sb);
  if (r < 0)
    {
      free (v->mrg.redo);
      v->mrg.redo = NULL;
      snprintf (err, errlen,
                "volume %s: no merge: writing the superblock of "
                "%s failed: %s",
                v->name, l->bk->uri, strerror (-r));
      return r;
    }
  vol_crash_point ("merge-start");
  v->mrg.active = true;
  v->mrg.cursor = v->mrg.copied = 0;
  v->mrg.total = v->cow_chunks;
  v->mrg.err = 0;
  qb_log (LOG_INFO,
          "volume: %s: merging %s (%" PRIu64 " chunks) into "
          "snapshot %s on %s",
          v->name, v->cow->uri, v->cow_chunks, l->sb.snap_name, l->bk->uri);
  mrg_schedule (v);
  return 0;
}

void
vol_merge_info (const struct volume *v, struct vol_merge *mi)
{
  *mi = (struct vol_merge){ .running = v->mrg.active,
                            .scanned = v->mrg.active ? v->mrg.cursor : 0,
                            .chunks = v->nchunks,
                            .copied = v->mrg.copied,
                            .error = v->mrg.err,
                            .freed = v->mrg.freed };
}
