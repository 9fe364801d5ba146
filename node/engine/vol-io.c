/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-io.c: the CoW data path.
 *
 * A request, once it holds its chunk locks (vol-lock.c), is cut into
 * per-chunk segments:
 *
 *   read, bit set     -> read the CoW at cow_base + offset
 *   read, bit clear   -> read the nearest frozen layer below that has the
 *                        chunk (vol-chain.c), else the base at the same
 *                        offset; "the base" below means that source
 *   write, bit set, aligned          -> write the CoW directly
 *   write, bit clear, whole chunk    -> write the CoW directly (no copy),
 *                                       then set the bit
 *   write, bit clear, partial chunk  -> CoW fault: read the chunk from the
 *                                       base, merge, write it whole, set bit
 *   write, bit set, not aligned      -> read-modify-write of the blocks
 *   hydrate, bit clear               -> copy from the base, set the bit
 *   hydrate, bit set                 -> nothing (a client wrote it first)
 *
 * The mapping is the identity, so neighbouring direct segments are also
 * neighbours on the device and merge into one IO.  Bits are set in the
 * in-memory map only after the data write completed; making them durable
 * is vol-commit.c's job, and the ack waits for it as the commit policy
 * says.  Every sub-IO holds one count in rq->pending; the last one
 * finishing moves the request on (io_finish).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "volume-int.h"

/* A sub-IO of a request. */
struct vio
{
  struct vreq *rq;
  uint64_t c0, c1; /* chunks this IO covers */
  bool set_bits;   /* set c0..c1 when the write completes */
  /* Copy (fault / RMW): read `len` bytes at `from` of `src_bk` into
   * bounce, merge the caller's bytes, write to the CoW at `to`. */
  struct backend *src_bk;
  char *bounce;
  uint64_t from, to;
  size_t len;
  size_t merge_at; /* offset in bounce of the caller's bytes */
  const char *merge_src;
  size_t merge_len;
};

static void
io_sub_done (struct vreq *rq, int res)
{
  if (res < 0 && rq->err == 0)
    rq->err = res;
  if (--rq->pending == 0)
    io_finish (rq);
}

static void
io_fail_submit (struct vreq *rq, struct vio *io, int r)
{
  /* The submit refused: account it as a failed sub-IO, but later, so
   * the request never completes inside its own submission. */
  free (io ? io->bounce : NULL);
  free (io);
  if (rq->err == 0)
    rq->err = r;
  rq->pending--;
}

/* Under `sync` a write that sets bits (a CoW fault) is flushed by the
 * next commit, before its ack: a page-cache CoW writes it around the
 * cache rather than copy 64 KiB into it only to write it back at once. */
static unsigned
io_fault_flags (struct volume *v, struct vio *io)
{
  bool fill = io->rq->type == VR_HYDRATE;
  return (v->commit == DSCOW_COMMIT_SYNC || fill) && io->set_bits ? BK_NOCACHE
                                                                  : 0;
}

static void
io_write_done (void *opaque, int res)
{
  struct vio *io = opaque;
  struct volume *v = io->rq->v;
  if (res == 0 && io->set_bits)
    for (uint64_t c = io->c0; c <= io->c1; c++)
      if (!dscow_bit_test (v->map, c))
        {
          dscow_bit_set (v->map, c);
          v->cow_chunks++;
          if (io->rq->type == VR_HYDRATE)
            v->st.hydrated_chunks++;
          else
            v->st.cow_faults++;
          commit_mark_dirty (v, c);
        }
  if (res == 0)
    merge_note_write (v, io->c0, io->c1);
  if (res < 0)
    qb_log (LOG_ERR,
            "volume: %s: write to the CoW device at offset %llu "
            "failed: %s",
            v->name, (unsigned long long) io->to, strerror (-res));
  struct vreq *rq = io->rq;
  free (io->bounce);
  free (io);
  io_sub_done (rq, res);
}

static void
io_copy_read_done (void *opaque, int res)
{
  struct vio *io = opaque;
  struct vreq *rq = io->rq;
  if (res < 0)
    {
      qb_log (LOG_ERR,
              "volume: %s: reading offset %llu of %s for a "
              "CoW copy failed: %s",
              rq->v->name, (unsigned long long) io->from, io->src_bk->uri,
              strerror (-res));
      io_write_done (io, res);
      return;
    }
  if (io->merge_len)
    memcpy (io->bounce + io->merge_at, io->merge_src, io->merge_len);
  int r
      = rq->v->cow->ops->write (rq->v->cow, io->bounce, io->to, io->len,
                                io_fault_flags (rq->v, io), io_write_done, io);
  if (r < 0)
    io_write_done (io, r); /* we are in a completion: safe */
}

static void
io_read_done (void *opaque, int res)
{
  struct vreq *rq = opaque;
  if (res < 0)
    qb_log (LOG_ERR, "volume: %s: read at offset %llu failed: %s", rq->v->name,
            (unsigned long long) rq->off, strerror (-res));
  io_sub_done (rq, res);
}

static void
io_issue_read (struct vreq *rq, int src, uint64_t off, uint64_t len)
{
  struct volume *v = rq->v;
  struct backend *bk = vol_src_bk (v, src);
  uint64_t dev_off = vol_src_off (v, src, off);
  if (rq->internal)
    ; /* read_*_bytes add up to bytes_read */
  else if (src >= 0)
    v->st.read_cow_bytes += len;
  else
    v->st.read_base_bytes += len;
  rq->pending++;
  int r = bk->ops->read (bk, rq->buf + (off - rq->off), dev_off, len,
                         io_read_done, rq);
  if (r < 0)
    io_fail_submit (rq, NULL, r);
}

/* The chunks from c on, up to c1, with the source of chunk c: how many;
 * the source in *src. */
static uint64_t
io_src_run (const struct volume *v, uint64_t c, uint64_t c1, int *src)
{
  *src = vol_chunk_src (v, c);
  if (v->nlower == 0) /* the top or the base: the bitmap's run */
    return dscow_bitmap_run (v->map, c, c1 - c + 1);
  uint64_t n = 1;
  while (c + n <= c1 && vol_chunk_src (v, c + n) == *src)
    n++;
  return n;
}

/* Reads: runs of chunks with the same source become one IO each. */
static void
io_start_read (struct vreq *rq)
{
  struct volume *v = rq->v;
  uint64_t pos = rq->off, end = rq->off + rq->len;
  while (pos < end)
    {
      uint64_t c = pos / v->cs;
      int src;
      uint64_t run = io_src_run (v, c, rq->c1, &src);
      uint64_t run_end = (c + run) * v->cs;
      if (run_end > end)
        run_end = end;
      io_issue_read (rq, src, pos, run_end - pos);
      pos = run_end;
    }
}

static void
io_issue_direct (struct vreq *rq, uint64_t off, uint64_t len, bool set_bits)
{
  struct volume *v = rq->v;
  struct vio *io = calloc (1, sizeof *io);
  if (!io)
    {
      rq->pending++;
      io_fail_submit (rq, NULL, -ENOMEM);
      return;
    }
  io->rq = rq;
  io->c0 = off / v->cs;
  io->c1 = (off + len - 1) / v->cs;
  io->set_bits = set_bits;
  io->to = v->cow_base + off;
  rq->pending++;
  int r = v->cow->ops->write (v->cow, rq->buf + (off - rq->off), io->to, len,
                              io_fault_flags (v, io), io_write_done, io);
  if (r < 0)
    io_fail_submit (rq, io, r);
}

/* A copy's bounce buffer of len bytes, counted in rq->pending; NULL when
 * out of memory (then accounted as a failed sub-IO). */
static struct vio *
io_new_copy (struct vreq *rq, size_t len)
{
  struct vio *io = calloc (1, sizeof *io);
  rq->pending++;
  if (!io || posix_memalign ((void **) &io->bounce, VOL_ALIGN, len))
    {
      if (io)
        io->bounce = NULL;
      io_fail_submit (rq, io, -ENOMEM);
      return NULL;
    }
  io->rq = rq;
  io->len = len;
  return io;
}

/* Read the copy's source; io_copy_read_done writes it to the CoW. */
static void
io_copy_start (struct vio *io)
{
  /* A CoW fault's copy is not a read of the volume: read_base_bytes and
   * read_cow_bytes add up to bytes_read. */
  int r = io->src_bk->ops->read (io->src_bk, io->bounce, io->from, io->len,
                                 io_copy_read_done, io);
  if (r < 0)
    io_fail_submit (io->rq, io, r);
}

/* A copy: the aligned range [a0, a1) of chunk c is read from the base
 * (fault) or the CoW (RMW), merged with the request's bytes [s, e), and
 * written to the CoW. */
static void
io_issue_copy (struct vreq *rq, uint64_t c, uint64_t s, uint64_t e, bool fault)
{
  struct volume *v = rq->v;
  uint64_t a0 = s & ~(uint64_t) (VOL_ALIGN - 1);
  uint64_t a1 = (e + VOL_ALIGN - 1) & ~(uint64_t) (VOL_ALIGN - 1);
  if (fault)
    {
      a0 = c * v->cs;
      a1 = a0 + vol_chunk_len (v, c);
    }
  struct vio *io = io_new_copy (rq, a1 - a0);
  if (!io)
    return;
  int src = fault ? vol_chunk_src (v, c) : (int) v->nlower;
  io->c0 = io->c1 = c;
  io->set_bits = fault;
  io->src_bk = vol_src_bk (v, src);
  io->from = vol_src_off (v, src, a0);
  io->to = v->cow_base + a0;
  io->merge_at = s - a0;
  io->merge_src = rq->buf + (s - rq->off);
  io->merge_len = e - s;
  io_copy_start (io);
}

/* Writes: classify each chunk; merge neighbouring direct segments. */
static void
io_start_write (struct vreq *rq)
{
  struct volume *v = rq->v;
  uint64_t end = rq->off + rq->len;
  uint64_t d_start = 0, d_end = 0; /* pending direct run */
  bool d_bits = false;
  for (uint64_t c = rq->c0; c <= rq->c1; c++)
    {
      uint64_t cstart = c * v->cs, cend = cstart + vol_chunk_len (v, c);
      uint64_t s = rq->off > cstart ? rq->off : cstart;
      uint64_t e = end < cend ? end : cend;
      bool set = dscow_bit_test (v->map, c);
      bool aligned = !((s | e) & (VOL_ALIGN - 1));
      bool direct = aligned && (set || (s == cstart && e == cend));
      if (direct && d_end == s && d_end != 0)
        {
          d_end = e;
          d_bits |= !set;
          continue;
        }
      if (d_end != 0)
        io_issue_direct (rq, d_start, d_end - d_start, d_bits);
      d_start = d_end = 0;
      d_bits = false;
      if (direct)
        {
          d_start = s, d_end = e, d_bits = !set;
          if (!set)
            v->st.full_chunk_writes++;
        }
      else
        io_issue_copy (rq, c, s, e, !set);
    }
  if (d_end != 0)
    io_issue_direct (rq, d_start, d_end - d_start, d_bits);
}

/* Hydration: each run of chunks still clear with one source is read from
 * it and written whole to the CoW, one IO each way, and its bits set. */
static void
io_issue_fill (struct vreq *rq, uint64_t c0, uint64_t c1, int src)
{
  struct volume *v = rq->v;
  uint64_t a0 = c0 * v->cs, a1 = c1 * v->cs + vol_chunk_len (v, c1);
  struct vio *io = io_new_copy (rq, a1 - a0);
  if (!io)
    return;
  io->c0 = c0;
  io->c1 = c1;
  io->set_bits = true;
  io->src_bk = vol_src_bk (v, src);
  io->from = vol_src_off (v, src, a0);
  io->to = v->cow_base + a0;
  io_copy_start (io);
}

static void
io_start_hydrate (struct volume *v, struct vreq *rq)
{
  uint64_t c = rq->c0;
  while (c <= rq->c1)
    {
      int src;
      uint64_t run = io_src_run (v, c, rq->c1, &src);
      if (src != (int) v->nlower)
        io_issue_fill (rq, c, c + run - 1, src);
      c += run;
    }
}

static void
io_trim_done (void *opaque, int res)
{
  io_sub_done (opaque, res == -EOPNOTSUPP ? 0 : res);
}

/* Trim: whole chunks already in the CoW layer have their space given back
 * to the CoW device (its data then reads as zeroes, which NBD allows
 * after a trim).  The bit stays set: clearing bits is a separate ordered
 * commit (rollback), never a side effect. */
static void
io_start_trim (struct vreq *rq)
{
  struct volume *v = rq->v;
  if (!v->cow->ops->discard)
    return;
  for (uint64_t c = rq->c0; c <= rq->c1; c++)
    {
      uint64_t cstart = c * v->cs, clen = vol_chunk_len (v, c);
      if (!dscow_bit_test (v->map, c) || rq->off > cstart
          || rq->off + rq->len < cstart + clen)
        continue;
      rq->pending++;
      merge_note_write (v, c, c);
      int r = v->cow->ops->discard (v->cow, v->cow_base + cstart, clen,
                                    io_trim_done, rq);
      if (r < 0)
        io_fail_submit (rq, NULL, r);
    }
}

/* Start (or restart after waiting for a lock) a read, write or trim. */
void
io_start (struct vreq *rq)
{
  struct volume *v = rq->v;
  if (!lock_try (v, rq))
    {
      vreq_append (&v->lock_wait_head, &v->lock_wait_tail, rq);
      return;
    }
  rq->pending = 1; /* held by io_start itself */
  if (rq->type == VR_READ)
    io_start_read (rq);
  else if (rq->type == VR_WRITE)
    io_start_write (rq);
  else if (rq->type == VR_HYDRATE)
    io_start_hydrate (v, rq);
  else
    io_start_trim (rq);
  io_sub_done (rq, 0);
}

/* Every sub-IO finished: release the locks, then ack now or after the
 * commit the policy asks for. */
void
io_finish (struct vreq *rq)
{
  struct volume *v = rq->v;
  lock_release (v, rq);
  /* A hydration copy's bits become durable by hydration's own commits
   * (hyd_commit), one a second rather than one a copy: a bit not yet
   * durable reads from the base after a crash, which holds the same data. */
  if (rq->err || rq->type == VR_READ || rq->type == VR_HYDRATE)
    {
      io_complete (rq);
      return;
    }
  bool fua = rq->flags & VOL_FUA;
  switch (v->commit)
    {
    case DSCOW_COMMIT_SYNC:
      if (!commit_durable (v, rq->c0, rq->c1))
        commit_enqueue (v, rq);
      else if (fua)
        commit_cow_flush (rq);
      else
        io_complete (rq);
      return;
    case DSCOW_COMMIT_FLUSH:
      if (fua)
        commit_enqueue (v, rq);
      else
        io_complete (rq);
      return;
    case DSCOW_COMMIT_NONE:
    default:
      if (fua)
        commit_cow_flush (rq);
      else
        io_complete (rq);
      return;
    }
}

/* Ack the request to its caller and forget it (or park it: volume.c). */
void
io_complete (struct vreq *rq)
{
  struct volume *v = rq->v;
  /* The lease gate (volume.c): a fenced host answers nothing; past the
   * lease the reply waits for the cluster's word. */
  if (rq->err == 0 && v->state == VOL_STATE_FENCED)
    rq->err = -EIO;
  else if (rq->err == 0 && !vol_lease_ok (v))
    {
      vol_park (rq);
      return;
    }
  if (rq->err)
    v->st.errors++;
  if (rq->ubuf && rq->err == 0)
    memcpy (rq->ubuf, rq->buf + (rq->uoff - rq->off), rq->ulen);
  free (rq->alloc);
  vol_done_fn *done = rq->done;
  void *opaque = rq->opaque;
  int err = rq->err;
  free (rq);
  v->in_flight--;
  v->st.in_flight = v->in_flight;
  if (v->submitting == 0 || vol_defer_done (done, opaque, err) != 0)
    done (opaque, err);
  vol_check_drained (v);
}
