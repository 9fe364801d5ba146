/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-export.c: `cowctl export`, a copy of the volume's contents as a
 * linear raw image on another device (a file, a block device, an iSCSI
 * LUN) while the volume serves.
 *
 * Point in time: the moment the export starts.  The start runs on a
 * drained volume (the caller holds it with vol_hold_op), so every write
 * acknowledged before it is in the image and none submitted after it is
 * ("all out"): copy-before-write, like qemu's backup job with sync=full.
 *
 *   taken   a bit per chunk: a copy of it was issued (or it is done);
 *   done    a bit per chunk: its contents at the start are on the target.
 *
 * Background: from a low-priority loop timer, the next run of chunks not
 * taken is read through the normal read path (an engine read, VR_READ
 * marked internal: chunk locks shared, each chunk from the layer that has
 * it, else the base) and written to the target at the same offset; at most
 * EXP_DEPTH copies of at most EXP_BYTES in flight (one while clients are
 * busy), and no faster than --rate (a token bucket, as hydration's).
 *
 * Before a write: vol_submit hands every WRITE, WRITE_ZEROES and TRIM to
 * export_divert first.  When one of its chunks is not done, the request
 * waits on the export's list and a copy of its chunks not yet taken is
 * issued at once (unthrottled); when the copies are done, it starts.  No
 * write to a chunk not done can be in flight: the ones before the start
 * were drained, the ones after it waited here.  A snapshot or a merge
 * does not change what the volume reads, so they may run meanwhile;
 * rollback and reset do, and are refused while an export runs.
 *
 * End: when every chunk is done, the target is flushed, then the export
 * is "done".  A failed read or target write ends it as "failed" with a
 * sentence; cancel as "cancelled"; any vol_hold other than an
 * operation's (a detach, a handoff, a quorum loss, cowd stopping) as
 * "failed" too: nothing is kept on disk, there is no resume.  Waiting
 * writes then start at once.  The target is closed when no copy is in
 * flight any more.  Every copy (and the flush) counts in v->in_flight, so
 * a drain waits for them.
 *
 * A target file that did not exist is created (sparse, the volume's
 * size): it reads as zeroes, so chunks that read as zeroes are not
 * written to it.  Any other target gets every chunk written.
 *
 * Owned by the main thread, like the rest of the engine.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cowlog.h"

#include "loop.h"
#include "volume-int.h"

#define EXP_BYTES (4096u * 1024u)   /* largest background copy */
#define EXP_DEPTH 8u                /* copies in flight when idle */
#define EXP_BUSY_NS 100000000ull    /* busy: a client request this recent */
#define EXP_WINDOW_NS 1000000000ull /* rate measurement */
#define EXP_POOL EXP_DEPTH          /* copy buffers kept */

enum exp_state
{
  EXP_RUNNING,
  EXP_DONE,
  EXP_FAILED,
  EXP_CANCELLED,
};

struct vol_exp
{
  enum exp_state state;
  uint64_t id;
  struct backend *target; /* open until no copy is in flight */
  char *target_uri;
  bool zeroed;           /* target created here: reads as zeroes */
  uint8_t *taken, *done; /* bitmaps, see above */
  uint64_t cursor, ndone, ahead, skipped;
  unsigned inflight; /* copies (and the flush) in flight */
  bool flushing;
  uint32_t rate;    /* MB/s, 0 = unlimited */
  uint64_t next_ns; /* throttle */
  struct cowd_timer timer;
  struct vreq *wait_head, *wait_tail; /* writes waiting for copies */
  /* Copy buffers of EXP_BYTES, kept for the next copy: a new 4 MiB
   * buffer costs page faults each time. */
  char *pool[EXP_POOL];
  unsigned npool;
  uint64_t start_ns, end_ns, win_ns, win_done;
  double bps;  /* bytes per second, last window */
  char *error; /* why it failed */
  int code;    /* and its COW_E_* code */
};

/* One copy: chunks c0..c1 read from the volume, written to the target. */
struct exp_copy
{
  struct volume *v;
  uint64_t c0, c1;
  char *buf;
  size_t len;
  unsigned pending; /* target writes in flight (+1 issuing) */
  int err;          /* the first one's error */
};

static void exp_pump (struct volume *v);

static const char *const exp_state_names[] = {
  [EXP_RUNNING] = "running",
  [EXP_DONE] = "done",
  [EXP_FAILED] = "failed",
  [EXP_CANCELLED] = "cancelled",
};

bool
export_running (const struct volume *v)
{
  return v->exp && v->exp->state == EXP_RUNNING;
}

static void
exp_timer_fn (void *data)
{
  exp_pump (data);
}

static void
exp_schedule (struct volume *v, uint64_t delay_ns)
{
  cowd_timer_arm (&v->exp->timer, delay_ns, exp_timer_fn, v);
}

static void
exp_stop_timer (struct vol_exp *x)
{
  cowd_timer_stop (&x->timer);
}

static void
exp_close_job (void *data)
{
  backend_close (data);
}

static char *
exp_buf_get (struct vol_exp *x)
{
  void *p;
  if (x->npool)
    return x->pool[--x->npool];
  return posix_memalign (&p, VOL_ALIGN, EXP_BYTES) == 0 ? p : NULL;
}

static void
exp_buf_put (struct vol_exp *x, char *buf)
{
  if (buf && x->npool < EXP_POOL)
    x->pool[x->npool++] = buf;
  else
    free (buf);
}

static void
exp_buf_drain (struct vol_exp *x)
{
  while (x->npool)
    free (x->pool[--x->npool]);
}

/* The target and the bitmaps go once the export ended and nothing is in
 * flight; the record (state, counts, error) stays for stats.  The target
 * is closed from the loop, not inside its own completion. */
static void
exp_release_target (struct volume *v)
{
  struct vol_exp *x = v->exp;
  if (x->state == EXP_RUNNING || x->inflight || !x->target)
    return;
  exp_stop_timer (x);
  if (cowd_defer (exp_close_job, x->target) != 0)
    backend_close (x->target);
  x->target = NULL;
  free (x->taken);
  free (x->done);
  x->taken = x->done = NULL;
  exp_buf_drain (x);
}

void
export_free (struct volume *v)
{
  if (!v->exp)
    return;
  exp_stop_timer (v->exp);
  exp_buf_drain (v->exp);
  backend_close (v->exp->target);
  free (v->exp->taken);
  free (v->exp->done);
  free (v->exp->target_uri);
  free (v->exp->error);
  free (v->exp);
  v->exp = NULL;
}

/* Are chunks c0..c1 all on the target? */
static bool
exp_all_done (const struct vol_exp *x, uint64_t c0, uint64_t c1)
{
  for (uint64_t c = c0; c <= c1; c++)
    if (!dscow_bit_test (x->done, c))
      return false;
  return true;
}

/* Start the writes whose chunks are all copied (every one, once the
 * export ended). */
static void
exp_release_waiters (struct volume *v)
{
  struct vol_exp *x = v->exp;
  struct vreq *list = vreq_take (&x->wait_head, &x->wait_tail), *rq;
  v->submitting++; /* early failures ack from the loop */
  while ((rq = vreq_pop (&list)))
    {
      if (x->state != EXP_RUNNING || exp_all_done (x, rq->c0, rq->c1))
        io_start (rq);
      else
        vreq_append (&x->wait_head, &x->wait_tail, rq);
    }
  v->submitting--;
}

/* The export ends (not done): waiting writes go on, the target closes
 * when the copies in flight are back. */
static void
exp_end (struct volume *v, enum exp_state st, int code, char *why)
{
  struct vol_exp *x = v->exp;
  if (x->state != EXP_RUNNING)
    {
      free (why);
      return;
    }
  x->state = st;
  x->code = code;
  x->error = why;
  x->end_ns = cowd_now_ns ();
  exp_stop_timer (x);
  if (st == EXP_FAILED)
    qb_log (LOG_ERR, "%s", why ? why : "volume: export failed");
  exp_release_waiters (v);
  exp_release_target (v);
}

static void
exp_fail (struct volume *v, const char *what, int res)
{
  char *why = NULL;
  if (asprintf (&why,
                "volume %s: the export to %s failed at %" PRIu64 " of %" PRIu64
                " chunks: %s: %s",
                v->name, v->exp->target_uri, v->exp->ndone, v->nchunks, what,
                strerror (-res))
      < 0)
    why = NULL;
  exp_end (v, EXP_FAILED,
           cow_err_code (res) == COW_E_INTERNAL ? COW_E_IO : cow_err_code (res),
           why);
}

void
export_abort (struct volume *v)
{
  if (!export_running (v))
    return;
  char *why = NULL;
  if (asprintf (&why,
                "volume %s: the export to %s stopped at %" PRIu64 " of %" PRIu64
                " chunks: the volume was held for a detach, "
                "a handoff or a quorum loss",
                v->name, v->exp->target_uri, v->exp->ndone, v->nchunks)
      < 0)
    why = NULL;
  exp_end (v, EXP_FAILED, COW_E_HELD, why);
}

static void
exp_measure (struct vol_exp *x, uint32_t cs)
{
  uint64_t now = cowd_now_ns ();
  if (x->win_ns == 0 || now - x->win_ns >= EXP_WINDOW_NS)
    {
      if (x->win_ns)
        x->bps = (double) (x->ndone - x->win_done) * cs * 1e9
                 / (double) (now - x->win_ns);
      x->win_ns = now;
      x->win_done = x->ndone;
    }
}

/* One copy is back (res: 0 or -errno from the step `what`). */
static void
exp_copy_end (struct exp_copy *cp, int res, const char *what)
{
  struct volume *v = cp->v;
  struct vol_exp *x = v->exp;
  if (res == 0 && x->state == EXP_RUNNING)
    {
      for (uint64_t c = cp->c0; c <= cp->c1; c++)
        dscow_bit_set (x->done, c);
      x->ndone += cp->c1 - cp->c0 + 1;
      exp_measure (x, v->cs);
    }
  else if (res < 0)
    exp_fail (v, what, res);
  exp_buf_put (x, cp->buf);
  free (cp);
  x->inflight--;
  exp_release_waiters (v);
  if (x->state == EXP_RUNNING && x->ndone == v->nchunks)
    exp_stop_timer (x); /* not a throttle's delay: finish now */
  if (x->state == EXP_RUNNING)
    exp_schedule (v, 0);
  exp_release_target (v);
  v->in_flight--;
  v->st.in_flight = v->in_flight;
  vol_check_drained (v);
}

static void
exp_write_done (void *opaque, int res)
{
  struct exp_copy *cp = opaque;
  if (res < 0 && cp->err == 0)
    cp->err = res;
  if (--cp->pending == 0)
    exp_copy_end (cp, cp->err, "writing to the target");
}

static bool
exp_is_zero (const char *buf, size_t len)
{
  return buf[0] == 0 && memcmp (buf, buf + 1, len - 1) == 0;
}

static void
exp_write (struct exp_copy *cp, size_t from, size_t to)
{
  struct volume *v = cp->v;
  cp->pending++;
  int r = v->exp->target->ops->write (v->exp->target, cp->buf + from,
                                      cp->c0 * v->cs + from, to - from, 0,
                                      exp_write_done, cp);
  if (r < 0)
    exp_write_done (cp, r);
}

/* The copy's data is read: write it, all of it, or to a target that
 * reads as zeroes the runs of chunks that are not zero. */
static void
exp_read_done (void *opaque, int res)
{
  struct exp_copy *cp = opaque;
  struct volume *v = cp->v;
  struct vol_exp *x = v->exp;
  if (res < 0 || x->state != EXP_RUNNING)
    return exp_copy_end (cp, res, "reading the volume");
  cp->pending = 1;
  size_t start = 0, pos = 0;
  bool run = false;
  for (; x->zeroed && pos < cp->len; pos += v->cs)
    {
      size_t n = cp->len - pos < v->cs ? cp->len - pos : v->cs;
      bool zero = exp_is_zero (cp->buf + pos, n);
      x->skipped += zero;
      if (run && zero)
        exp_write (cp, start, pos);
      else if (!run && !zero)
        start = pos;
      run = !zero;
    }
  if (!x->zeroed)
    exp_write (cp, 0, cp->len);
  else if (run)
    exp_write (cp, start, cp->len);
  exp_write_done (cp, 0);
}

/* Copy chunks c0..c1 (none taken yet): an engine read, then the target. */
static void
exp_issue (struct volume *v, uint64_t c0, uint64_t c1)
{
  struct vol_exp *x = v->exp;
  uint64_t off = c0 * v->cs;
  uint64_t end = c1 * v->cs + vol_chunk_len (v, c1);
  size_t len = (end - off + VOL_ALIGN - 1) & ~(uint64_t) (VOL_ALIGN - 1);
  struct exp_copy *cp = calloc (1, sizeof *cp);
  struct vreq *rq = calloc (1, sizeof *rq);
  char *buf = exp_buf_get (x);
  if (!cp || !rq || !buf)
    {
      free (cp);
      free (rq);
      free (buf);
      return exp_fail (v, "allocating a buffer", -ENOMEM);
    }
  for (uint64_t c = c0; c <= c1; c++)
    dscow_bit_set (x->taken, c);
  *cp = (struct exp_copy){ .v = v, .c0 = c0, .c1 = c1, .buf = buf, .len = len };
  *rq = (struct vreq){ .v = v,
                       .type = VR_READ,
                       .internal = true,
                       .buf = buf,
                       .off = off,
                       .len = (uint32_t) len,
                       .c0 = c0,
                       .c1 = c1,
                       .done = exp_read_done,
                       .opaque = cp };
  x->inflight++;
  v->in_flight += 2; /* the copy (exp_copy_end gives it back) and
                      * its read (io_complete) */
  v->st.in_flight = v->in_flight;
  v->submitting++;
  io_start (rq);
  v->submitting--;
}

bool
export_divert (struct volume *v, struct vreq *rq)
{
  struct vol_exp *x = v->exp;
  if (!export_running (v) || rq->len == 0 || exp_all_done (x, rq->c0, rq->c1))
    return false;
  vreq_append (&x->wait_head, &x->wait_tail, rq);
  for (uint64_t c = rq->c0; c <= rq->c1; c++)
    {
      if (dscow_bit_test (x->taken, c))
        continue;
      uint64_t n = 1;
      while (c + n <= rq->c1 && !dscow_bit_test (x->taken, c + n))
        n++;
      if (n > EXP_BYTES / v->cs)
        n = EXP_BYTES / v->cs ? EXP_BYTES / v->cs : 1;
      x->ahead += n;
      if (x->rate)
        x->next_ns += n * v->cs * 1000ull / x->rate;
      exp_issue (v, c, c + n - 1);
      if (!export_running (v))
        break; /* the copy failed at once */
      c += n - 1;
    }
  return true;
}

/* --- the background walk --- */

static bool
exp_busy (const struct volume *v)
{
  return cowd_now_ns () - v->client_ns < EXP_BUSY_NS;
}

static bool
exp_may_run (const struct volume *v)
{
  return export_running (v) && !v->exp->flushing && v->state == VOL_STATE_ACTIVE
         && !v->held && vol_lease_ok (v);
}

/* May a copy of len bytes start now?  If not, come back when it may. */
static bool
exp_throttle (struct volume *v, uint64_t len)
{
  struct vol_exp *x = v->exp;
  if (x->rate == 0)
    return true;
  uint64_t now = cowd_now_ns ();
  if (now < x->next_ns)
    {
      exp_schedule (v, x->next_ns - now);
      return false;
    }
  if (x->next_ns + EXP_WINDOW_NS < now)
    x->next_ns = now;                    /* no credit saved up from idle time */
  x->next_ns += len * 1000ull / x->rate; /* MB/s = bytes per us */
  return true;
}

static uint64_t
exp_max_chunks (const struct volume *v)
{
  uint64_t bytes = EXP_BYTES;
  if (v->exp->rate && v->exp->rate * 100000ull < bytes)
    bytes = v->exp->rate * 100000ull;
  return bytes / v->cs ? bytes / v->cs : 1;
}

static void
exp_flush_done (void *opaque, int res)
{
  struct volume *v = opaque;
  struct vol_exp *x = v->exp;
  x->inflight--;
  x->flushing = false;
  if (res < 0)
    exp_fail (v, "flushing the target", res);
  else if (x->state == EXP_RUNNING)
    {
      x->state = EXP_DONE;
      x->end_ns = cowd_now_ns ();
      qb_log (LOG_INFO,
              "volume: %s: exported to %s: %" PRIu64 " chunks "
              "(%" PRIu64 " copied ahead of a write, %" PRIu64 " zero and "
              "skipped) in %.3f s",
              v->name, x->target_uri, x->ndone, x->ahead, x->skipped,
              (double) (x->end_ns - x->start_ns) / 1e9);
    }
  exp_release_target (v);
  v->in_flight--;
  v->st.in_flight = v->in_flight;
  vol_check_drained (v);
}

/* Every chunk is on the target: flush it, then done. */
static void
exp_finish (struct volume *v)
{
  struct vol_exp *x = v->exp;
  x->flushing = true;
  x->inflight++;
  v->in_flight++;
  v->st.in_flight = v->in_flight;
  int r = x->target->ops->flush (x->target, exp_flush_done, v);
  if (r < 0)
    {
      v->submitting++;
      exp_flush_done (v, r);
      v->submitting--;
    }
}

static void
exp_pump (struct volume *v)
{
  struct vol_exp *x = v->exp;
  unsigned depth = exp_busy (v) ? 1 : EXP_DEPTH;
  while (exp_may_run (v) && x->inflight < depth)
    {
      if (x->ndone == v->nchunks)
        return exp_finish (v);
      while (x->cursor < v->nchunks && dscow_bit_test (x->taken, x->cursor))
        x->cursor
            += dscow_bitmap_run (x->taken, x->cursor, v->nchunks - x->cursor);
      if (x->cursor >= v->nchunks)
        return; /* copies in flight: their end comes back */
      uint64_t n
          = dscow_bitmap_run (x->taken, x->cursor, v->nchunks - x->cursor);
      if (n > exp_max_chunks (v))
        n = exp_max_chunks (v);
      if (!exp_throttle (v, n * v->cs))
        return;
      exp_issue (v, x->cursor, x->cursor + n - 1);
    }
}

void
export_kick (struct volume *v)
{
  if (export_running (v))
    exp_schedule (v, 0);
}

/* --- the commands --- */

static int
exp_check_idle (struct volume *v, char *err, size_t errlen)
{
  if (!export_running (v))
    return 0;
  snprintf (err, errlen,
            "volume %s: an export to %s runs already; cancel "
            "it first (cowctl export %s --cancel)",
            v->name, v->exp->target_uri, v->name);
  return -COW_E_BUSY;
}

static int
exp_check_owner (struct volume *v, char *err, size_t errlen)
{
  if (vol_check_serving (v, "the export", err, errlen) < 0)
    return -COW_E_NOT_OWNER;
  return exp_check_idle (v, err, errlen);
}

/* A path that does not exist yet: a new sparse file of the volume's size. */
static int
exp_create_file (const char *name, uint64_t size, const char *path,
                 bool *created, char *err, size_t errlen)
{
  struct stat st;
  if (strncmp (path, "iscsi://", 8) == 0 || stat (path, &st) == 0
      || errno != ENOENT)
    return 0;
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate (fd, (off_t) size) < 0)
    {
      int e = errno;
      snprintf (err, errlen,
                "volume %s: creating the export target %s "
                "failed: %s",
                name, path, strerror (e));
      if (fd >= 0)
        {
          close (fd);
          unlink (path);
        }
      return -e;
    }
  close (fd);
  *created = true;
  return 0;
}

/* Not a device of the volume (key: backend_key, before it is opened:
 * the volume holds its CoW devices open). */
static int
exp_check_device (struct volume *v, const char *uri, const char *key, char *err,
                  size_t errlen)
{
  const char *what = NULL;
  if (v->base && strcmp (v->base->key, key) == 0)
    what = "the volume's own base";
  else if (chain_uses (v, key))
    what = "a CoW layer of the volume itself";
  if (!what)
    return 0;
  snprintf (err, errlen, "volume %s: the export target %s is %s", v->name, uri,
            what);
  return -COW_E_BAD_DEVICE;
}

static int
exp_check_size (const char *name, uint64_t size, struct backend *t, char *err,
                size_t errlen)
{
  if (t->size >= size)
    return 0;
  snprintf (err, errlen,
            "volume %s: the export target %s is too small: it "
            "has %" PRIu64 " bytes and the volume %" PRIu64 " bytes",
            name, t->uri, t->size, size);
  return -COW_E_BAD_DEVICE;
}

int
vol_export_check (struct volume *v, const char *uri, char *err, size_t errlen)
{
  char key[sizeof ((struct backend *) 0)->key];
  int r = exp_check_owner (v, err, errlen);
  backend_key (uri, key, sizeof key);
  return r < 0 ? r : exp_check_device (v, uri, key, err, errlen);
}

int
vol_export_open_target (const char *name, uint64_t size, const char *uri,
                        const struct backend_opts *bo, struct backend **out,
                        bool *created, char *err, size_t errlen)
{
  char e[COW_ERRLEN - 256];
  struct backend_opts o = *bo;
  *created = false;
  int r = exp_create_file (name, size, uri, created, err, errlen);
  if (r < 0)
    return r;
  o.writable = true;
  o.direct = true;
  o.on_login = NULL;
  o.on_fenced = NULL;
  o.may_write = NULL;
  o.wrap = NULL;
  if ((r = backend_open (uri, &o, out, e, sizeof e)) < 0)
    {
      snprintf (err, errlen,
                "volume %s: the export target cannot be used: "
                "%s",
                name, e);
      r = cow_err_code (r) == COW_E_INTERNAL ? -COW_E_BAD_DEVICE : r;
    }
  else if ((r = exp_check_size (name, size, *out, err, errlen)) < 0)
    {
      backend_close (*out);
      *out = NULL;
    }
  if (r < 0 && *created)
    unlink (uri);
  return r;
}

int
vol_export_begin (struct volume *v, struct backend *target, bool zeroed,
                  uint32_t rate_mbs, char *err, size_t errlen)
{
  uint64_t bm = dscow_bitmap_bytes (v->sb.volume_size, v->cs);
  int r = exp_check_idle (v, err, errlen);
  if (r < 0)
    return r;
  struct vol_exp *x = calloc (1, sizeof *x);
  if (!x || !(x->target_uri = strdup (target->uri))
      || !(x->taken = calloc (1, bm)) || !(x->done = calloc (1, bm)))
    {
      if (x)
        {
          free (x->target_uri);
          free (x->taken);
          free (x);
        }
      snprintf (err, errlen, "volume %s: out of memory for the export",
                v->name);
      return -COW_E_INTERNAL;
    }
  export_free (v);
  x->target = target;
  x->zeroed = zeroed;
  x->rate = rate_mbs;
  x->start_ns = x->id = cowd_now_ns ();
  v->exp = x;
  qb_log (LOG_INFO,
          "volume: %s: export to %s started (%" PRIu64 " chunks, "
          "at most %" PRIu32 " MB/s, 0 = unlimited); writes from now on "
          "are not in it",
          v->name, x->target_uri, v->nchunks, rate_mbs);
  return 0;
}

int
vol_export_cancel (struct volume *v, char *err, size_t errlen)
{
  if (!export_running (v))
    {
      snprintf (err, errlen, "volume %s has no export running", v->name);
      return -COW_E_NOT_RUNNING;
    }
  char *why = NULL;
  if (asprintf (&why,
                "volume %s: the export to %s was cancelled at %" PRIu64
                " of %" PRIu64 " chunks",
                v->name, v->exp->target_uri, v->exp->ndone, v->nchunks)
      < 0)
    why = NULL;
  qb_log (LOG_INFO, "%s", why ? why : "export cancelled");
  exp_end (v, EXP_CANCELLED, COW_E_NOT_RUNNING, why);
  return 0;
}

void
vol_export_info (const struct volume *v, struct vol_export_info *xi)
{
  const struct vol_exp *x = v->exp;
  *xi = (struct vol_export_info){ .eta_s = -1 };
  if (!x)
    return;
  uint64_t now = cowd_now_ns ();
  double bps = x->bps;
  if (x->state == EXP_RUNNING && x->win_ns && now - x->win_ns > EXP_WINDOW_NS)
    bps = (double) (x->ndone - x->win_done) * v->cs * 1e9
          / (double) (now - x->win_ns);
  uint64_t t1 = x->end_ns ? x->end_ns : now;
  *xi = (struct vol_export_info){ .id = x->id,
                                  .state = exp_state_names[x->state],
                                  .target = x->target_uri,
                                  .done = x->ndone,
                                  .total = v->nchunks,
                                  .ahead = x->ahead,
                                  .skipped = x->skipped,
                                  .bytes = v->sb.volume_size,
                                  .limit_mbs = x->rate,
                                  .elapsed_s
                                  = (double) (t1 - x->start_ns) / 1e9,
                                  .rate_mbs
                                  = x->state == EXP_RUNNING ? bps / 1e6 : 0,
                                  .eta_s = -1,
                                  .error = x->error ? x->error : "",
                                  .code = x->code };
  if (x->state == EXP_DONE && xi->elapsed_s > 0)
    xi->rate_mbs = (double) v->sb.volume_size / xi->elapsed_s / 1e6;
  if (x->state == EXP_RUNNING && bps > 0)
    xi->eta_s = (double) (v->nchunks - x->ndone) * v->cs / bps;
}
