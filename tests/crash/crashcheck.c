/* SPDX-License-Identifier: GPL-2.0-or-later */
/* crashcheck.c: crash replay of the volume engine.
 *
 * For each workload (one seed): format a volume whose CoW device sits on a
 * write log (wlog.c), run a random concurrent workload through the real
 * engine (libcowengine: io_uring, qb_loop), then, for many crash points
 * in the log, rebuild the CoW device as it was at that point
 * (wlog_replay), open it with the engine again and read back every chunk
 * the workload touched.  Each 512-byte sector must hold one of the
 * contents the commit policy allows at that point:
 *
 *   the floor:  the last version of the sector that the policy promised
 *               durable before the point, or the base when none was;
 *   or any version after it whose request was submitted before the point
 *   (acknowledged or not); a TRIM allows zeroes and what it trimmed.
 *
 * A version is promised durable when its request was acknowledged before
 * the point and
 *   sync:  it faulted a chunk into the CoW layer (the bit is durable before
 *          the ack, so is its data), or it was FUA, or a barrier (FLUSH,
 *          FUA write, handoff clean mark, close) submitted after its ack
 *          completed before the point; after a crash that keeps every
 *          completed write (cowd killed, not the power), every
 *          acknowledged write;
 *   flush: FUA, or a barrier as above;
 *   none:  never: the volume opens as a fresh copy of the base.
 * Anything else reads as a violation: data from before the floor (a lost
 * write), stale CoW contents behind a set bit (zeroes or another chunk's
 * data), or a volume that does not open.
 *
 * Crash points: after every FLUSH and every FUA write of the log, with
 * everything logged kept; and random points where the writes no flush
 * covers yet are each kept, dropped or torn at 512-byte sectors (wlog.h),
 * in any combination, so bitmap blocks and 64K chunk writes land in part.
 *
 * The workload: phases of concurrent requests (writes of 512 bytes to two
 * chunks, full-chunk writes, FUA, WRITE_ZEROES, TRIM, FLUSH) over a few
 * hot chunks, so faults and overwrites mix; between phases a handoff
 * (hold, clean mark, resume) or a reopen (close, open, takeover).  Two
 * geometries alternate: 64K chunks, and 4K chunks over a volume whose
 * bitmap spans two sectors with the workload on both sides of the line.
 * Requests that overlap are never in flight together (their order would
 * be undefined); that is what makes a per-sector history exact.
 *
 * The workload's own events go into the log as MARK records: a request
 * submitted (off, len, aux = kind << 32 | request number; len 0 for a
 * flush, clean mark or close) and acknowledged (len 1, aux = request
 * number); the checker keeps the same positions in its request table.
 *
 * With --hydrate the workload also hydrates the volume (vol-hydrate.c):
 * the copy starts with the first phase, runs beside the client requests
 * (and across the handoffs and reopens, from the superblock's wish) and
 * is waited for after the last phase, so crash points fall at every step
 * of it: the wish written, a copy's data, its flush, its bitmap block, the
 * last commit and the hydrated flag.  A copy writes the base, so the model
 * is unchanged, but every chunk is read back (a bit made durable before
 * its copy reads as zeroes), a superblock that says hydrated must have
 * every bit set, and at some points the replayed volume is taken over
 * again and must finish the hydration by copying exactly the chunks whose
 * bit is clear on it, then read back right again.
 *
 * --save LOG keeps the first workload's log (and its CoW device as
 * LOG.cow); --replay LOG [--point N] [--tear] OUT rebuilds the device at
 * point N (default: the whole log) into OUT, the replayer on its own.
 *
 * Output: one line per policy with workloads, crash points and
 * violations; exit 1 on a violation (0 with --expect-violations, which the
 * build without the data flush before the bitmap write uses).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qb/qbloop.h>
#include <qb/qblog.h>

#include "loop.h"
#include "volume.h"
#include "wlog.h"

#define SECTOR 512u
#define MAX_INFLIGHT 8
#define PHASES 6
#define OPS_PER_PHASE 40
#define HOT 10

enum mkind
{
  M_WRITE,
  M_ZERO,
  M_TRIM,
  M_FLUSH,
  M_CLEAN,
  M_CLOSE,
};

/* One request of the workload (also the barriers: flush, clean, close). */
struct mop
{
  enum mkind kind;
  uint64_t off;
  uint32_t len;
  bool fua, fault;
  uint64_t sub, ack; /* log positions of its submit / ack */
};

/* The versions of one sector: the requests that wrote it, in order. */
struct hist
{
  uint32_t *ids;
  uint32_t n, cap;
};

struct run
{
  enum dscow_commit policy;
  uint32_t chunk;
  uint64_t size;
  uint64_t win_off, win_len; /* where hot chunks are picked */
  char dir[64], base[96], cow[96], log[96], img[96];
  struct wlog *wl;
  struct volume *vol;
  unsigned seed;
  struct mop *ops;
  uint32_t nops, capops;
  /* the running phase */
  uint32_t inflight[MAX_INFLIGHT];
  unsigned ninflight, issued;
  uint64_t hot[HOT];
  uint64_t format_end;
  int errors;
  bool hydrate; /* --hydrate */
};

static bool verbose, hydrate;
static unsigned long resumes_total;
static unsigned long points_total, points_boundary, violations_total;

/* The contents of version `id` at volume offset off (one sector):
 * id 0 is the base. */
static void
pattern (uint32_t id, uint64_t off, uint8_t *buf, uint32_t len)
{
  for (uint32_t i = 0; i < len; i += 8)
    {
      uint64_t z = ((uint64_t) id << 40) ^ (off + i) ^ 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      memcpy (buf + i, &z, 8);
    }
}

static void
die (const char *what)
{
  fprintf (stderr, "crashcheck: %s\n", what);
  exit (2);
}

/* --- running the engine on the loop --- */

static void
loop_done (void *opaque, int res)
{
  *(int *) opaque = res;
  qb_loop_stop (cowd_loop ());
}

static int
loop_wait (int *res)
{
  *res = 1;
  qb_loop_run (cowd_loop ());
  return *res;
}

static void
vparams (struct run *r, struct vol_params *p, const char *cow)
{
  *p = (struct vol_params){ .name = "crash",
                            .base_uri = r->base,
                            .cow_uri = cow,
                            .chunk_size = r->chunk,
                            .commit = r->policy,
                            .buffered = true };
}

struct takeover
{
  bool done;
  int res;
};

static void
takeover_done (void *opaque, int res, const char *err)
{
  struct takeover *t = opaque;
  if (res < 0)
    fprintf (stderr, "crashcheck: %s\n", err);
  t->done = true;
  t->res = res;
  qb_loop_stop (cowd_loop ());
}

/* Format (the first time) or open again, and take the volume over: at a
 * reopen the way cowd's ownership does it, without blocking the loop. */
static void
run_open (struct run *r, bool format, uint64_t epoch)
{
  char err[512];
  struct vol_params p;
  struct backend_opts bo = { .wrap = wlog_wrap, .wrap_opaque = r->wl };
  struct takeover t = { 0 };
  vparams (r, &p, r->cow);
  if (format && vol_format (&p, &bo, err, sizeof err) < 0)
    die (err);
  if (vol_open (&p, &bo, &r->vol, err, sizeof err) < 0)
    die (err);
  if (format && vol_takeover (r->vol, epoch, 1, 0, err, sizeof err) < 0)
    die (err);
  if (format)
    return;
  vol_takeover_async (r->vol, epoch, 1, 0, takeover_done, &t);
  if (!t.done)
    qb_loop_run (cowd_loop ());
  if (t.res < 0)
    die ("the takeover after a reopen failed");
}

/* --- the workload --- */

static struct mop *
mop_new (struct run *r, enum mkind kind, uint64_t off, uint32_t len)
{
  if (r->nops == r->capops)
    {
      r->capops = r->capops ? 2 * r->capops : 256;
      r->ops = realloc (r->ops, r->capops * sizeof *r->ops);
      if (!r->ops)
        die ("out of memory");
    }
  struct mop *m = &r->ops[r->nops++];
  *m = (struct mop){ .kind = kind, .off = off, .len = len, .ack = UINT64_MAX };
  m->sub = wlog_count (r->wl);
  wlog_mark (r->wl, off, len, (uint64_t) kind << 32 | (r->nops - 1));
  return m;
}

static void
mop_acked (struct run *r, uint32_t id)
{
  r->ops[id].ack = wlog_count (r->wl);
  wlog_mark (r->wl, 0, 1, id);
}

static bool
busy_overlap (struct run *r, uint64_t off, uint32_t len)
{
  for (unsigned i = 0; i < r->ninflight; i++)
    {
      struct mop *m = &r->ops[r->inflight[i]];
      if (m->kind != M_FLUSH && off < m->off + m->len && m->off < off + len)
        return true;
    }
  return false;
}

/* A range: mostly in the hot chunks, sometimes anywhere in the window. */
static void
pick_range (struct run *r, int style, uint64_t *off, uint32_t *len)
{
  uint64_t c = rand_r (&r->seed) % 10 < 8
                   ? r->hot[rand_r (&r->seed) % HOT]
                   : (r->win_off + rand_r (&r->seed) % r->win_len) / r->chunk;
  *off = c * r->chunk;
  if (style == 0) /* whole chunks: no copy from the base */
    *len = r->chunk * (1 + rand_r (&r->seed) % 2);
  else if (style == 1) /* sectors, maybe across a chunk edge */
    {
      *off += rand_r (&r->seed) % (r->chunk / SECTOR) * SECTOR;
      *len = SECTOR * (1 + rand_r (&r->seed) % 16);
    }
  else /* 4K pieces */
    {
      *off += rand_r (&r->seed) % (r->chunk / 4096) * 4096;
      *len = 4096 * (1 + rand_r (&r->seed) % 8);
    }
  if (*off + *len > r->size)
    *len = (uint32_t) (r->size - *off);
}

struct opctx
{
  struct run *r;
  uint32_t id;
  void *buf;
};

static void issue (struct run *r);

static void
op_done (void *opaque, int res)
{
  struct opctx *c = opaque;
  struct run *r = c->r;
  if (res != 0)
    {
      fprintf (stderr, "crashcheck: request %u failed: %s\n", c->id,
               strerror (-res));
      r->errors++;
    }
  mop_acked (r, c->id);
  for (unsigned i = 0; i < r->ninflight; i++)
    if (r->inflight[i] == c->id)
      r->inflight[i] = r->inflight[--r->ninflight];
  free (c->buf);
  free (c);
  if (r->issued < OPS_PER_PHASE)
    issue (r);
  else if (r->ninflight == 0)
    qb_loop_stop (cowd_loop ());
}

/* Whether a request will fault a chunk into the CoW layer itself: a chunk
 * of its range is not in the layer and no request in flight touches it
 * (one that does might fault it first and commit it before this request
 * ends, which then needs no commit of its own). */
static bool
faults (struct run *r, uint64_t off, uint32_t len)
{
  for (uint64_t c = off / r->chunk; c <= (off + len - 1) / r->chunk; c++)
    {
      struct vol_extent ext;
      if (vol_block_status (r->vol, VOL_CTX_COW, c * r->chunk, 1, &ext, 1) == 1
          && !(ext.flags & 1) && !busy_overlap (r, c * r->chunk, r->chunk))
        return true;
    }
  return false;
}

static int
submit (struct run *r, struct opctx *c, struct mop *m)
{
  switch (m->kind)
    {
    case M_WRITE:
      if (posix_memalign (&c->buf, 4096, m->len) != 0)
        die ("out of memory");
      for (uint32_t s = 0; s < m->len; s += SECTOR)
        pattern (c->id + 1, m->off + s, (uint8_t *) c->buf + s, SECTOR);
      return vol_write (r->vol, c->buf, m->off, m->len, m->fua ? VOL_FUA : 0,
                        op_done, c);
    case M_ZERO:
      return vol_write_zeroes (r->vol, m->off, m->len, m->fua ? VOL_FUA : 0,
                               op_done, c);
    case M_TRIM:
      return vol_trim (r->vol, m->off, m->len, 0, op_done, c);
    default:
      return vol_flush (r->vol, op_done, c);
    }
}

static void
issue (struct run *r)
{
  static const enum mkind kinds[20]
      = { M_WRITE, M_WRITE, M_WRITE, M_WRITE, M_WRITE, M_WRITE, M_WRITE,
          M_WRITE, M_WRITE, M_WRITE, M_WRITE, M_WRITE, M_WRITE, M_ZERO,
          M_ZERO,  M_TRIM,  M_TRIM,  M_FLUSH, M_WRITE, M_WRITE };
  enum mkind kind = kinds[rand_r (&r->seed) % 20];
  uint64_t off = 0;
  uint32_t len = 0;
  int style = kind == M_TRIM ? 0 : rand_r (&r->seed) % 3;
  if (kind != M_FLUSH)
    do
      pick_range (r, style, &off, &len);
    while (busy_overlap (r, off, len));
  bool fault = kind != M_FLUSH && faults (r, off, len);
  struct mop *m = mop_new (r, kind, off, len);
  m->fault = fault;
  m->fua = kind != M_TRIM && kind != M_FLUSH && rand_r (&r->seed) % 8 == 0;
  struct opctx *c = calloc (1, sizeof *c);
  *c = (struct opctx){ .r = r, .id = r->nops - 1 };
  r->inflight[r->ninflight++] = c->id;
  r->issued++;
  if (submit (r, c, m) != 0)
    die ("a request was refused at once");
}

static void
handoff_cleaned (void *opaque, int res)
{
  struct run *r = opaque;
  if (res != 0)
    r->errors++;
  mop_acked (r, r->nops - 1);
  vol_resume (r->vol);
  qb_loop_stop (cowd_loop ());
}

static void
handoff_drained (void *opaque, int res)
{
  struct run *r = opaque;
  vol_mark_clean_async (r->vol, handoff_cleaned, r);
}

/* Between phases: nothing, a handoff's clean mark, or a reopen. */
static void
between_phases (struct run *r, int phase)
{
  int res, what = (phase + (int) (r->seed % 3)) % 3;
  if (what == 1)
    {
      mop_new (r, M_CLEAN, 0, 0);
      vol_hold (r->vol, handoff_drained, r);
      qb_loop_run (cowd_loop ());
    }
  else if (what == 2)
    {
      mop_new (r, M_CLOSE, 0, 0);
      vol_close (r->vol, loop_done, &res);
      if (loop_wait (&res) != 0)
        r->errors++;
      mop_acked (r, r->nops - 1);
      run_open (r, false, (uint64_t) phase + 2);
    }
}

/* Run the loop until v is hydrated, looking every 5 ms, at most secs. */
static void
hydrate_tick (void *data)
{
  qb_loop_stop (cowd_loop ());
}

static bool
hydrate_wait (struct volume *v, unsigned secs)
{
  struct vol_hydrate hi;
  qb_loop_timer_handle t;
  uint64_t t0 = cowd_now_ns ();
  vol_hydrate_info (v, &hi);
  while (!hi.hydrated && cowd_now_ns () - t0 < secs * 1000000000ull)
    {
      qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW, 5000000, NULL, hydrate_tick,
                         &t);
      qb_loop_run (cowd_loop ());
      vol_hydrate_info (v, &hi);
    }
  return hi.hydrated;
}

static void
run_hydrate_start (struct run *r)
{
  char err[512];
  if (vol_hydrate_start (r->vol, 0, err, sizeof err) < 0)
    die (err);
}

static void
run_workload (struct run *r)
{
  run_open (r, true, 1);
  r->format_end = wlog_count (r->wl);
  if (r->hydrate)
    run_hydrate_start (r);
  for (int i = 0; i < HOT; i++)
    r->hot[i] = (r->win_off + rand_r (&r->seed) % r->win_len) / r->chunk;
  for (int phase = 0; phase < PHASES; phase++)
    {
      r->issued = 0;
      for (int i = 0; i < MAX_INFLIGHT; i++)
        issue (r);
      qb_loop_run (cowd_loop ());
      if (phase + 1 < PHASES)
        between_phases (r, phase);
    }
  if (r->hydrate && !hydrate_wait (r->vol, 60))
    die ("the hydration did not finish in 60 s");
  int res;
  vol_close (r->vol, loop_done, &res);
  if (loop_wait (&res) != 0)
    r->errors++;
  if (r->errors)
    die ("the workload itself failed");
}

/* --- the checker --- */

struct model
{
  struct hist *h; /* per sector */
  uint64_t nsect;
  bool *touched; /* per chunk */
  uint64_t nchunks;
};

static void
hist_add (struct hist *h, uint32_t id)
{
  if (h->n == h->cap)
    {
      h->cap = h->cap ? 2 * h->cap : 4;
      h->ids = realloc (h->ids, h->cap * sizeof *h->ids);
      if (!h->ids)
        die ("out of memory");
    }
  h->ids[h->n++] = id;
}

static void
model_build (struct run *r, struct model *md)
{
  md->nsect = r->size / SECTOR;
  md->nchunks = (r->size + r->chunk - 1) / r->chunk;
  md->h = calloc (md->nsect, sizeof *md->h);
  md->touched = calloc (md->nchunks, sizeof *md->touched);
  for (uint64_t c = 0; r->hydrate && c < md->nchunks; c++)
    md->touched[c] = true; /* every chunk may have been copied */
  for (uint32_t id = 0; id < r->nops; id++)
    {
      struct mop *m = &r->ops[id];
      if (m->kind > M_TRIM)
        continue;
      for (uint64_t s = m->off / SECTOR; s < (m->off + m->len) / SECTOR; s++)
        hist_add (&md->h[s], id);
      for (uint64_t c = m->off / r->chunk;
           c <= (m->off + m->len - 1) / r->chunk; c++)
        md->touched[c] = true;
    }
}

static void
model_free (struct model *md)
{
  for (uint64_t s = 0; s < md->nsect; s++)
    free (md->h[s].ids);
  free (md->h);
  free (md->touched);
}

/* The latest barrier submit position among barriers acked before pt. */
static uint64_t
barrier_before (struct run *r, uint64_t pt)
{
  uint64_t b = 0;
  for (uint32_t id = 0; id < r->nops; id++)
    {
      struct mop *m = &r->ops[id];
      bool barrier = m->kind >= M_FLUSH || m->fua;
      if (barrier && m->ack < pt && m->sub > b)
        b = m->sub;
    }
  return b;
}

static bool
promised (struct run *r, const struct mop *m, uint64_t pt, uint64_t barrier,
          bool tear)
{
  if (m->ack >= pt)
    return false;
  if (m->fua || m->ack < barrier)
    return true;
  return r->policy == DSCOW_COMMIT_SYNC && (m->fault || !tear);
}

static bool
sector_ok (struct run *r, const struct hist *h, uint64_t s, const uint8_t *got,
           uint64_t pt, uint64_t barrier, bool tear)
{
  uint8_t want[SECTOR];
  long lo = -1, hi = -1;
  for (uint32_t i = 0; i < h->n; i++)
    {
      const struct mop *m = &r->ops[h->ids[i]];
      if (m->sub < pt)
        hi = i;
      if (r->policy != DSCOW_COMMIT_NONE && promised (r, m, pt, barrier, tear))
        lo = i;
    }
  if (r->policy == DSCOW_COMMIT_NONE)
    hi = -1;
  while (lo >= 0 && r->ops[h->ids[lo]].kind == M_TRIM)
    lo--; /* a trim may have kept what it trimmed */
  for (long i = lo; i <= hi; i++)
    {
      if (i < 0)
        pattern (0, s * SECTOR, want, SECTOR);
      else if (r->ops[h->ids[i]].kind != M_WRITE)
        memset (want, 0, SECTOR);
      else
        pattern (h->ids[i] + 1, s * SECTOR, want, SECTOR);
      if (memcmp (got, want, SECTOR) == 0)
        return true;
    }
  return false;
}

static int
read_range (struct volume *v, uint8_t *buf, uint64_t off, uint64_t len)
{
  int res;
  if (vol_read (v, buf, off, (uint32_t) len, loop_done, &res) != 0)
    return -EIO;
  return loop_wait (&res);
}

/* Open the replayed device and check every touched chunk.  Returns the
 * number of bad sectors (1 for a volume that does not open). */
static unsigned long check_data (struct run *r, struct model *md,
                                 struct volume *v, uint64_t pt,
                                 uint64_t barrier, bool tear, uint8_t *buf);
static unsigned long check_hydrated_flag (struct volume *v, uint64_t pt);
static unsigned long check_resume (struct run *r, struct model *md,
                                   struct volume *v, uint64_t pt,
                                   uint64_t barrier, bool tear, uint8_t *buf);

static unsigned long
check_point (struct run *r, struct model *md, uint64_t pt, bool tear,
             bool resume, uint8_t *buf)
{
  char err[512];
  struct vol_params p;
  struct backend_opts bo = { 0 };
  struct volume *v;
  unsigned long bad;
  uint64_t barrier = barrier_before (r, pt);
  vparams (r, &p, r->img);
  if (vol_open (&p, &bo, &v, err, sizeof err) < 0)
    {
      fprintf (stderr, "crashcheck: point %llu: %s\n", (unsigned long long) pt,
               err);
      return 1;
    }
  bad = check_data (r, md, v, pt, barrier, tear, buf);
  if (r->hydrate)
    bad += check_hydrated_flag (v, pt);
  if (r->hydrate && !bad && resume)
    bad += check_resume (r, md, v, pt, barrier, tear, buf);
  int res;
  vol_close (v, loop_done, &res);
  loop_wait (&res);
  return bad;
}

/* Read back every touched chunk: the number of bad sectors. */
static unsigned long
check_data (struct run *r, struct model *md, struct volume *v, uint64_t pt,
            uint64_t barrier, bool tear, uint8_t *buf)
{
  unsigned long bad = 0;
  for (uint64_t c = 0; c < md->nchunks; c++)
    {
      uint64_t off = c * r->chunk, len = r->chunk;
      if (!md->touched[c])
        continue;
      if (off + len > r->size)
        len = r->size - off;
      if (read_range (v, buf, off, len) != 0)
        {
          bad++;
          continue;
        }
      for (uint64_t s = off / SECTOR; s < (off + len) / SECTOR; s++)
        if (!sector_ok (r, &md->h[s], s, buf + (s * SECTOR - off), pt, barrier,
                        tear))
          {
            if (verbose || bad == 0)
              fprintf (stderr,
                       "crashcheck: point %llu (%s): sector %llu "
                       "(chunk %llu) holds data the policy does not allow\n",
                       (unsigned long long) pt, tear ? "torn" : "kept",
                       (unsigned long long) s, (unsigned long long) c);
            bad++;
          }
    }
  return bad;
}

/* A superblock that says hydrated has every bit set. */
static unsigned long
check_hydrated_flag (struct volume *v, uint64_t pt)
{
  struct vol_hydrate hi;
  vol_hydrate_info (v, &hi);
  if (!hi.hydrated || hi.done == hi.total)
    return 0;
  fprintf (stderr,
           "crashcheck: point %llu: the superblock says hydrated "
           "with %llu of %llu bits set\n",
           (unsigned long long) pt, (unsigned long long) hi.done,
           (unsigned long long) hi.total);
  return 1;
}

/* Take the replayed volume over as a new owner would: a hydration whose
 * wish is on disk goes on by itself, copies exactly the chunks whose bit
 * is clear there, ends hydrated, and the data still reads right. */
static unsigned long
check_resume (struct run *r, struct model *md, struct volume *v, uint64_t pt,
              uint64_t barrier, bool tear, uint8_t *buf)
{
  char err[512];
  struct vol_hydrate hi;
  vol_hydrate_info (v, &hi);
  if (!hi.wanted)
    return 0; /* not asked yet, or hydrated already */
  uint64_t clear = hi.total - hi.done;
  if (vol_takeover (v, 1000, 2, 0, err, sizeof err) < 0)
    {
      fprintf (stderr, "crashcheck: point %llu: %s\n", (unsigned long long) pt,
               err);
      return 1;
    }
  resumes_total++;
  if (!hydrate_wait (v, 10))
    {
      fprintf (stderr,
               "crashcheck: point %llu: the resumed hydration did "
               "not finish in 10 s\n",
               (unsigned long long) pt);
      return 1;
    }
  vol_hydrate_info (v, &hi);
  if (hi.copied != clear)
    {
      fprintf (stderr,
               "crashcheck: point %llu: the resumed hydration copied "
               "%llu chunks; %llu were clear\n",
               (unsigned long long) pt, (unsigned long long) hi.copied,
               (unsigned long long) clear);
      return 1;
    }
  return check_data (r, md, v, pt, barrier, tear, buf);
}

static unsigned long
replay_and_check (struct run *r, struct wlog_file *f, struct model *md,
                  uint64_t pt, bool tear, uint8_t *buf)
{
  bool resume = r->hydrate && rand_r (&r->seed) % 4 == 0;
  int fd = open (r->img, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || wlog_replay (f, pt, tear, &r->seed, fd) < 0)
    die ("replaying the log failed");
  close (fd);
  points_total++;
  return check_point (r, md, pt, tear, resume, buf) ? 1 : 0;
}

static unsigned long
check_workload (struct run *r, unsigned boundary_max, unsigned random_points)
{
  char err[512];
  struct wlog_file f;
  struct model md;
  unsigned long viol = 0;
  uint8_t *buf;
  if (wlog_load (r->log, &f, err, sizeof err) < 0)
    die (err);
  if (posix_memalign ((void **) &buf, 4096, r->chunk) != 0)
    die ("out of memory");
  model_build (r, &md);
  /* Every FLUSH and FUA write after the format (sampled down to at most
   * boundary_max), everything logged kept. */
  uint64_t nb = 0;
  for (uint64_t i = r->format_end; i < f.n; i++)
    nb += f.recs[i].type == WLOG_FLUSH || (f.recs[i].flags & WLOG_F_FUA);
  for (uint64_t i = r->format_end; i < f.n; i++)
    if ((f.recs[i].type == WLOG_FLUSH || (f.recs[i].flags & WLOG_F_FUA))
        && (uint64_t) rand_r (&r->seed) % nb < boundary_max)
      {
        viol += replay_and_check (r, &f, &md, i + 1, false, buf);
        points_boundary++;
      }
  for (unsigned k = 0; k < random_points; k++)
    {
      uint64_t pt = r->format_end + 1
                    + (uint64_t) rand_r (&r->seed) % (f.n - r->format_end);
      viol
          += replay_and_check (r, &f, &md, pt, rand_r (&r->seed) % 4 != 0, buf);
    }
  model_free (&md);
  free (buf);
  wlog_file_free (&f);
  return viol;
}

/* --- setup --- */

static void
write_base (struct run *r)
{
  uint8_t *buf = malloc (1 << 20);
  int fd = open (r->base, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (!buf || fd < 0)
    die ("cannot create the base");
  for (uint64_t off = 0; off < r->size; off += 1 << 20)
    {
      pattern (0, off, buf, 1 << 20);
      if (write (fd, buf, 1 << 20) != 1 << 20)
        die ("cannot write the base");
    }
  close (fd);
  free (buf);
}

static void
run_setup (struct run *r, enum dscow_commit policy, unsigned seed,
           const char *tmp)
{
  memset (r, 0, sizeof *r);
  r->policy = policy;
  r->seed = seed;
  r->hydrate = hydrate && policy != DSCOW_COMMIT_NONE;
  if (seed % 2 == 0) /* 64K chunks */
    r->chunk = 65536, r->size = 4 << 20, r->win_off = 0, r->win_len = r->size;
  else /* bitmap over two sectors; work across */
    r->chunk = 4096, r->size = 20 << 20, r->win_off = (16 << 20) - (256 << 10),
    r->win_len = 512 << 10;
  snprintf (r->dir, sizeof r->dir, "%s/crashcheck.XXXXXX", tmp);
  if (!mkdtemp (r->dir))
    die ("cannot make a temporary folder");
  snprintf (r->base, sizeof r->base, "%s/base", r->dir);
  snprintf (r->cow, sizeof r->cow, "%s/cow", r->dir);
  snprintf (r->log, sizeof r->log, "%s/log", r->dir);
  snprintf (r->img, sizeof r->img, "%s/img", r->dir);
  write_base (r);
  uint64_t cow_size = r->size + (1 << 20);
  int fd = open (r->cow, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate (fd, (off_t) cow_size) < 0)
    die ("cannot create the CoW file");
  close (fd);
  if (!(r->wl = wlog_create (r->log, cow_size)))
    die ("cannot create the write log");
}

static void
run_teardown (struct run *r, bool keep)
{
  const char *names[] = { r->base, r->cow, r->log, r->img };
  free (r->ops);
  if (keep)
    {
      fprintf (stderr, "crashcheck: kept %s\n", r->dir);
      return;
    }
  for (int i = 0; i < 4; i++)
    unlink (names[i]);
  rmdir (r->dir);
}

/* Copy a file (the log and the CoW device, for --save). */
static void
copy_file (const char *from, const char *to)
{
  char buf[65536];
  ssize_t n;
  int in = open (from, O_RDONLY),
      out = open (to, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (in < 0 || out < 0)
    die ("cannot copy the log");
  while ((n = read (in, buf, sizeof buf)) > 0)
    if (write (out, buf, (size_t) n) != n)
      die ("cannot copy the log");
  close (in);
  close (out);
}

static unsigned long
one_workload (enum dscow_commit policy, unsigned seed, const char *tmp,
              unsigned boundary_max, unsigned random_points, bool keep,
              const char *save)
{
  struct run r;
  char path[512];
  run_setup (&r, policy, seed, tmp);
  run_workload (&r);
  wlog_free (r.wl); /* flushes the log file */
  if (save)
    {
      copy_file (r.log, save);
      snprintf (path, sizeof path, "%s.cow", save);
      copy_file (r.cow, path);
    }
  unsigned long v = check_workload (&r, boundary_max, random_points);
  run_teardown (&r, keep && v > 0);
  return v;
}

/* --replay LOG --point N [--tear --seed S] OUT: the device at point N. */
static int
replay_cmd (const char *log, const char *point, bool tear, unsigned seed,
            const char *out)
{
  char err[512];
  struct wlog_file f;
  if (wlog_load (log, &f, err, sizeof err) < 0)
    {
      fprintf (stderr, "crashcheck: %s\n", err);
      return 1;
    }
  uint64_t pt = point ? strtoull (point, NULL, 10) : f.n;
  int fd = open (out, O_CREAT | O_RDWR, 0600);
  int r = fd < 0 ? -errno : wlog_replay (&f, pt, tear, &seed, fd);
  if (fd >= 0)
    close (fd);
  if (r < 0)
    fprintf (stderr,
             "crashcheck: replaying %s to record %llu into %s "
             "failed: %s\n",
             log, (unsigned long long) pt, out, strerror (-r));
  else
    printf ("crashcheck: %s: records 0 to %llu of %llu replayed into %s\n", log,
            (unsigned long long) pt, (unsigned long long) f.n, out);
  wlog_file_free (&f);
  return r < 0;
}

static void
usage (void)
{
  fprintf (stderr,
           "usage: crashcheck [--policy sync|flush|none] "
           "[--workloads N] [--boundary N] [--random N] [--seed S] "
           "[--dir DIR] [--expect-violations] [--keep] [--save LOG] "
           "[--hydrate] [--verbose]\n"
           "       crashcheck --replay LOG [--point N] [--tear] [--seed S] "
           "OUT\n");
  exit (2);
}

int
main (int argc, char **argv)
{
  static const struct option lo[] = { { "policy", 1, 0, 'p' },
                                      { "workloads", 1, 0, 'w' },
                                      { "boundary", 1, 0, 'b' },
                                      { "random", 1, 0, 'r' },
                                      { "seed", 1, 0, 's' },
                                      { "dir", 1, 0, 'd' },
                                      { "expect-violations", 0, 0, 'x' },
                                      { "keep", 0, 0, 'k' },
                                      { "verbose", 0, 0, 'v' },
                                      { "save", 1, 0, 'S' },
                                      { "replay", 1, 0, 'R' },
                                      { "point", 1, 0, 'P' },
                                      { "tear", 0, 0, 't' },
                                      { "hydrate", 0, 0, 'H' },
                                      { 0, 0, 0, 0 } };
  const char *save = NULL, *replay = NULL, *point = NULL;
  enum dscow_commit policy = DSCOW_COMMIT_SYNC;
  unsigned workloads = 2, boundary = 50, random_points = 50, seed = 1;
  const char *tmp = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
  bool expect = false, keep = false, tear = false;
  int c;
  while ((c = getopt_long (argc, argv, "", lo, NULL)) != -1)
    switch (c)
      {
      case 'p':
        if (vol_commit_parse (optarg, &policy) < 0)
          usage ();
        break;
      case 'w':
        workloads = (unsigned) atoi (optarg);
        break;
      case 'b':
        boundary = (unsigned) atoi (optarg);
        break;
      case 'r':
        random_points = (unsigned) atoi (optarg);
        break;
      case 's':
        seed = (unsigned) atoi (optarg);
        break;
      case 'd':
        tmp = optarg;
        break;
      case 'x':
        expect = true;
        break;
      case 'k':
        keep = true;
        break;
      case 'v':
        verbose = true;
        break;
      case 'S':
        save = optarg;
        break;
      case 'R':
        replay = optarg;
        break;
      case 'P':
        point = optarg;
        break;
      case 't':
        tear = true;
        break;
      case 'H':
        hydrate = true;
        break;
      default:
        usage ();
      }
  if (replay)
    {
      if (optind + 1 != argc)
        usage ();
      return replay_cmd (replay, point, tear, seed, argv[optind]);
    }
  qb_log_filter_ctl (QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
                     LOG_WARNING);
  cowd_loop_set (qb_loop_create ());
  for (unsigned w = 0; w < workloads; w++)
    violations_total
        += one_workload (policy, seed + w, tmp, boundary, random_points, keep,
                         w == 0 ? save : NULL);
  printf ("crashcheck: policy %s: %u workloads, %lu crash points (%lu at "
          "flush/FUA boundaries, %lu random, torn or kept), %lu with "
          "violations\n",
          vol_commit_name (policy), workloads, points_total, points_boundary,
          points_total - points_boundary, violations_total);
  if (hydrate)
    printf ("crashcheck: hydration: %lu points resumed to the end\n",
            resumes_total);
  if (expect)
    return violations_total > 0 ? 0 : 1;
  return violations_total > 0 ? 1 : 0;
}
