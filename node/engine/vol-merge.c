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
 *   copy      while the volume serves, one copy in flight at a time, each
 *             started from a low-priority loop timer: the next run of the
 *             top's chunks (at most MRG_BYTES) is read from the top and
 *             written to L at the same offset on the backends' asynchronous
 *             paths, and L's bits set in memory.  A chunk of the top
 *             written again after its copy started (a client, a hydration
 *             fill, a trim) is marked in `redo` when that write completes,
 *             and copied again: by further passes over `redo`, also while
 *             the volume serves, until what is left is at most
 *             MRG_FINAL_BYTES (or MRG_PASSES passes were made: writers
 *             faster than the copy);
 *   finish    the volume is held and drained; the redo chunks are copied;
 *             L's data is flushed, then its whole bitmap written and
 *             flushed; then L's superblock loses FROZEN, MERGING and its
 *             link up and becomes the top: the commit, one superblock
 *             write.  The old top is freed.
 *
 * A crash before the commit leaves the old chain (L's extra bits point at
 * the top's data, which the top shadows), marked MERGING; when the volume
 * is taken again (cowd restarted, attach) the merge starts again by itself
 * from the first chunk (merge_resume; vol_params.resume_merge), as
 * `cowctl merge` would.  After the commit, the new chain.  The copies in
 * the background never block the loop; only the held finish uses the
 * backends' blocking calls, for at most MRG_FINAL_BYTES of redo chunks
 * when the passes converged.
 * Test hooks: COWD_TEST_MERGE_STEP_MS=N pauses N ms between copies, so
 * tests can look at a merge while it runs; COWD_TEST_MERGE_FINAL_BYTES=N
 * leaves at most N bytes for the held finish (passes while clients
 * write).
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

#define MRG_BYTES (1024u * 1024u)            /* one copy at most */
#define MRG_FINAL_BYTES (4u * 1024u * 1024u) /* left for the held finish */
#define MRG_PASSES 4u                        /* over the redo chunks */

static void mrg_pump (struct volume *v);

static void
mrg_timer_fn (void *data)
{
  mrg_pump (data);
}

static void
mrg_schedule (struct volume *v)
{
  cowd_timer_arm (&v->mrg.timer, v->mrg.step_ns, mrg_timer_fn, v);
}

void
merge_stop (struct volume *v)
{
  cowd_timer_stop (&v->mrg.timer);
  free (v->mrg.redo);
  v->mrg.redo = NULL;
  free (v->mrg.freed);
  v->mrg.freed = NULL;
  v->mrg.active = v->mrg.finishing = v->mrg.resumed = false;
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

/* The run [c, c + n) of chunks, in bytes from the data area's start. */
static void
mrg_span (const struct volume *v, uint64_t c, uint64_t n, uint64_t *off,
          uint64_t *len)
{
  *off = c * v->cs;
  *len = (c + n - 1) * v->cs + vol_chunk_len (v, c + n - 1) - *off;
}

/* L has chunks [c, c + n) of the top now. */
static void
mrg_copied (struct volume *v, uint64_t c, uint64_t n)
{
  struct vol_layer *l = &v->lower[v->nlower - 1];
  for (uint64_t i = c; i < c + n; i++)
    if (!dscow_bit_test (l->map, i))
      {
        dscow_bit_set (l->map, i);
        l->chunks++;
      }
  v->mrg.copied += n;
}

/* Held: copy chunks c .. c + n - 1 of the top into L, blocking; set L's
 * bits. */
static int
mrg_copy (struct volume *v, uint64_t c, uint64_t n, char *buf)
{
  struct vol_layer *l = &v->lower[v->nlower - 1];
  uint64_t off, len;
  mrg_span (v, c, n, &off, &len);
  for (uint64_t i = c; i < c + n; i++)
    dscow_bit_clear (v->mrg.redo, i);
  int r = backend_pread_sync (v->cow, buf, v->cow_base + off, len);
  if (r == 0)
    r = backend_pwrite_sync (l->bk, buf, v->cow_base + off, len, 0);
  if (r < 0)
    return r;
  mrg_copied (v, c, n);
  return 0;
}

/* A copy while the volume serves: read from the top, then write to L,
 * each on the backend's asynchronous path. */
struct mrg_io
{
  struct volume *v;
  char *buf;
  uint64_t c, n, off, len;
};

static void
mrg_io_end (struct mrg_io *io, int res, const char *what)
{
  struct volume *v = io->v;
  if (res == 0)
    mrg_copied (v, io->c, io->n);
  bool first = res == 0 && v->mrg.copied == io->n;
  free (io->buf);
  free (io);
  v->mrg.busy = false;
  v->in_flight--;
  v->st.in_flight = v->in_flight;
  if (v->state == VOL_STATE_READONLY)
    merge_stop (v); /* released meanwhile: the next owner goes on */
  else if (res < 0)
    mrg_fail (v, what, res);
  else
    {
      if (first)
        vol_crash_point ("merge-copying");
      mrg_schedule (v);
    }
  vol_check_drained (v); /* a hold may wait for this copy */
}

static void
mrg_written (void *opaque, int res)
{
  mrg_io_end (opaque, res, "writing to the lower layer");
}

static void
mrg_read (void *opaque, int res)
{
  struct mrg_io *io = opaque;
  struct volume *v = io->v;
  struct backend *lower = v->lower[v->nlower - 1].bk;
  if (res < 0)
    return mrg_io_end (io, res, "reading from the top");
  int r = lower->ops->write (lower, io->buf, v->cow_base + io->off, io->len, 0,
                             mrg_written, io);
  if (r < 0)
    mrg_io_end (io, r, "writing to the lower layer");
}

static void
mrg_issue (struct volume *v, uint64_t c, uint64_t n)
{
  struct mrg_io *io = calloc (1, sizeof *io);
  char *buf = io ? vol_alloc_aligned (MRG_BYTES) : NULL;
  if (!buf)
    {
      free (io);
      return mrg_fail (v, "copying from the top", -ENOMEM);
    }
  *io = (struct mrg_io){ .v = v, .buf = buf, .c = c, .n = n };
  mrg_span (v, c, n, &io->off, &io->len);
  /* Written again from here on (when that write completes): again. */
  for (uint64_t i = c; i < c + n; i++)
    dscow_bit_clear (v->mrg.redo, i);
  v->mrg.cursor = c + n;
  v->mrg.busy = true;
  v->in_flight++;
  v->st.in_flight = v->in_flight;
  int r = v->cow->ops->read (v->cow, buf, v->cow_base + io->off, io->len,
                             mrg_read, io);
  if (r < 0)
    mrg_io_end (io, r, "reading from the top");
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
  if (!v->mrg.active || v->mrg.finishing || v->mrg.busy || v->held
      || v->state != VOL_STATE_ACTIVE || !vol_lease_ok (v))
    return; /* merge_kick starts it again; a copy's end goes on */
  const uint8_t *sel = v->mrg.pass ? v->mrg.redo : v->map;
  uint64_t n = mrg_next_run (v, sel, &v->mrg.cursor, MRG_BYTES / v->cs);
  if (n)
    return mrg_issue (v, v->mrg.cursor, n);
  uint64_t left = dscow_bitmap_count (v->mrg.redo, v->nchunks);
  if (left * v->cs > v->mrg.final_bytes && v->mrg.pass < MRG_PASSES)
    {
      v->mrg.pass++; /* another pass over what was written meanwhile */
      v->mrg.cursor = 0;
      return mrg_schedule (v);
    }
  v->mrg.finishing = true; /* the rest is copied held: finish */
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
  if (res == -ECANCELED)
    {
      /* A handoff, a quorum loss or a detach held the volume first: not a
       * failure; the flag on disk starts it again where the volume is
       * taken next (merge_resume). */
      qb_log (LOG_NOTICE,
              "volume: %s: merge: the volume was held for a handoff or a "
              "detach before the merge's end; it goes on where the volume "
              "is taken next",
              v->name);
      merge_stop (v);
      vol_resume_op (v);
      return;
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

/* Copying starts: the redo map, the counters, the first copy. */
static int
mrg_begin (struct volume *v, bool resumed)
{
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK;
  if (!(v->mrg.redo = vol_alloc_aligned (bm)))
    return -ENOMEM;
  const char *step = getenv ("COWD_TEST_MERGE_STEP_MS");
  v->mrg.step_ns = step ? strtoull (step, NULL, 10) * 1000000ull : 0;
  const char *fin = getenv ("COWD_TEST_MERGE_FINAL_BYTES");
  v->mrg.final_bytes = fin ? strtoull (fin, NULL, 10) : MRG_FINAL_BYTES;
  v->mrg.active = true;
  v->mrg.resumed = resumed;
  v->mrg.pass = 0;
  v->mrg.cursor = v->mrg.copied = 0;
  v->mrg.total = v->cow_chunks;
  v->mrg.err = 0;
  mrg_schedule (v);
  return 0;
}

void
merge_resume (struct volume *v)
{
  if (!v->resume_merge || v->mrg.active || v->nlower == 0
      || v->commit == DSCOW_COMMIT_NONE
      || !(v->lower[v->nlower - 1].sb.flags & DSCOW_FLAG_MERGING))
    return;
  struct vol_layer *l = &v->lower[v->nlower - 1];
  if (mrg_begin (v, true) < 0)
    {
      qb_log (LOG_ERR,
              "volume: %s: the merge into snapshot %s was interrupted "
              "and cannot start again: out of memory; cowctl merge %s "
              "starts it",
              v->name, l->sb.snap_name, v->name);
      return;
    }
  qb_log (LOG_NOTICE,
          "volume: %s: the merge of %s into snapshot %s on %s was "
          "interrupted; it starts again (%" PRIu64 " chunks)",
          v->name, v->cow->uri, l->sb.snap_name, l->bk->uri, v->cow_chunks);
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
  l->sb.flags |= DSCOW_FLAG_MERGING;
  int r = chain_put_super (l->bk, &l->sb);
  if (r < 0)
    {
      l->sb.flags &= ~DSCOW_FLAG_MERGING;
      snprintf (err, errlen,
                "volume %s: no merge: writing the superblock of "
                "%s failed: %s",
                v->name, l->bk->uri, strerror (-r));
      return r;
    }
  vol_crash_point ("merge-start");
  if (mrg_begin (v, false) < 0)
    {
      snprintf (err, errlen,
                "volume %s: out of memory for the merge; it starts "
                "again when the volume is attached again, or with cowctl "
                "merge %s",
                v->name, v->name);
      return -COW_E_INTERNAL;
    }
  qb_log (LOG_INFO,
          "volume: %s: merging %s (%" PRIu64 " chunks) into "
          "snapshot %s on %s",
          v->name, v->cow->uri, v->cow_chunks, l->sb.snap_name, l->bk->uri);
  return 0;
}

void
vol_merge_info (const struct volume *v, struct vol_merge *mi)
{
  *mi = (struct vol_merge){ .running = v->mrg.active,
                            .resumed = v->mrg.active && v->mrg.resumed,
                            .pass = v->mrg.active ? v->mrg.pass : 0,
                            .scanned = !v->mrg.active ? 0
                                       : v->mrg.pass  ? v->nchunks
                                                      : v->mrg.cursor,
                            .chunks = v->nchunks,
                            .copied = v->mrg.copied,
                            .error = v->mrg.err,
                            .freed = v->mrg.freed };
}
