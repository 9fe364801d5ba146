/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wlog.c: the write log (see wlog.h for the format and its rules).
 *
 * Three parts: the writer (wlog_create, wlog_append), the layer that sits
 * under the engine as a struct backend and logs each request as it
 * completes successfully (a failed request is not logged: nothing of it
 * is assumed to have reached the device), and the reader and replayer.
 * Everything runs on the one loop thread of the program under test.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byteorder.h"
#include "dscow.h"
#include "wlog.h"

#define WLOG_MAGIC "CWHWLOG" /* 8 bytes with its NUL */
#define WLOG_REC_MAGIC 0x474f4c57u

struct wlog
{
  FILE *f;
  uint64_t seq;
};

/* --- writer --- */

struct wlog *
wlog_create (const char *path, uint64_t dev_size)
{
  uint8_t h[WLOG_HEADER_SIZE] = { 0 };
  struct wlog *log = calloc (1, sizeof *log);
  if (!log || !(log->f = fopen (path, "wb")))
    {
      free (log);
      return NULL;
    }
  memcpy (h, WLOG_MAGIC, 8);
  le32_put (h + 8, WLOG_VERSION);
  le32_put (h + 12, WLOG_HEADER_SIZE);
  le64_put (h + 16, dev_size);
  le32_put (h + 24, WLOG_SECTOR);
  le32_put (h + 60, dscow_crc32c (0, h, 60));
  if (fwrite (h, sizeof h, 1, log->f) != 1)
    {
      wlog_free (log);
      return NULL;
    }
  return log;
}

void
wlog_free (struct wlog *log)
{
  if (log)
    fclose (log->f);
  free (log);
}

uint64_t
wlog_count (const struct wlog *log)
{
  return log->seq;
}

static int
wlog_append (struct wlog *log, const struct wlog_rec *r)
{
  uint8_t h[WLOG_REC_SIZE] = { 0 };
  uint32_t plen = r->type == WLOG_WRITE ? (uint32_t) r->len : 0;
  le32_put (h, WLOG_REC_MAGIC);
  le16_put (h + 4, r->type);
  le16_put (h + 6, r->flags);
  le64_put (h + 8, log->seq);
  le64_put (h + 16, r->off);
  le64_put (h + 24, r->len);
  le64_put (h + 32, r->aux);
  le32_put (h + 40, plen);
  uint32_t crc = dscow_crc32c (0, h, sizeof h);
  le32_put (h + 44, dscow_crc32c (crc, r->data, plen));
  if (fwrite (h, sizeof h, 1, log->f) != 1
      || (plen && fwrite (r->data, plen, 1, log->f) != 1))
    return -EIO;
  log->seq++;
  return 0;
}

int
wlog_mark (struct wlog *log, uint64_t off, uint64_t len, uint64_t aux)
{
  struct wlog_rec r = { .type = WLOG_MARK, .off = off, .len = len, .aux = aux };
  return wlog_append (log, &r);
}

/* --- the layer --- */

struct wl_bk
{
  struct backend pub; /* first: the engine sees this */
  struct backend *inner;
  struct wlog *log;
};

struct wl_io
{
  struct wl_bk *w;
  struct wlog_rec rec;
  bk_done_fn *done;
  void *opaque;
};

static struct wl_bk *
wl_of (struct backend *bk)
{
  return bk->priv;
}

static void
wl_io_done (void *opaque, int res)
{
  struct wl_io *io = opaque;
  if (res == 0)
    res = wlog_append (io->w->log, &io->rec);
  io->done (io->opaque, res);
  free (io);
}

static int
wl_submit (struct backend *bk, const struct wlog_rec *rec, bk_done_fn *done,
           void *opaque, struct wl_io **out)
{
  struct wl_io *io = malloc (sizeof *io);
  if (!io)
    return -ENOMEM;
  *io = (struct wl_io){
    .w = wl_of (bk), .rec = *rec, .done = done, .opaque = opaque
  };
  *out = io;
  return 0;
}

static int
wl_read (struct backend *bk, void *buf, uint64_t off, size_t len,
         bk_done_fn *done, void *opaque)
{
  struct backend *in = wl_of (bk)->inner;
  return in->ops->read (in, buf, off, len, done, opaque);
}

static int
wl_write (struct backend *bk, const void *buf, uint64_t off, size_t len,
          unsigned flags, bk_done_fn *done, void *opaque)
{
  struct backend *in = wl_of (bk)->inner;
  struct wlog_rec rec = { .type = WLOG_WRITE,
                          .off = off,
                          .len = len,
                          .flags = flags & BK_FUA ? WLOG_F_FUA : 0,
                          .data = buf };
  struct wl_io *io;
  int r = wl_submit (bk, &rec, done, opaque, &io);
  if (r == 0
      && (r = in->ops->write (in, buf, off, len, flags, wl_io_done, io)) < 0)
    free (io);
  return r;
}

static int
wl_flush (struct backend *bk, bk_done_fn *done, void *opaque)
{
  struct wl_bk *w = wl_of (bk);
  struct wlog_rec rec = { .type = WLOG_FLUSH, .aux = wlog_count (w->log) };
  struct wl_io *io;
  int r = wl_submit (bk, &rec, done, opaque, &io);
  if (r == 0 && (r = w->inner->ops->flush (w->inner, wl_io_done, io)) < 0)
    free (io);
  return r;
}

static int
wl_discard (struct backend *bk, uint64_t off, size_t len, bk_done_fn *done,
            void *opaque)
{
  struct backend *in = wl_of (bk)->inner;
  struct wlog_rec rec = { .type = WLOG_DISCARD, .off = off, .len = len };
  struct wl_io *io;
  if (!in->ops->discard)
    return -EOPNOTSUPP;
  int r = wl_submit (bk, &rec, done, opaque, &io);
  if (r == 0 && (r = in->ops->discard (in, off, len, wl_io_done, io)) < 0)
    free (io);
  return r;
}

static void
wl_close (struct backend *bk)
{
  struct wl_bk *w = wl_of (bk);
  backend_close (w->inner);
  free (w);
}

static int
wl_pread_sync (struct backend *bk, void *buf, uint64_t off, size_t len)
{
  struct backend *in = wl_of (bk)->inner;
  return in->ops->pread_sync (in, buf, off, len);
}

static int
wl_pwrite_sync (struct backend *bk, const void *buf, uint64_t off, size_t len,
                unsigned flags)
{
  struct wl_bk *w = wl_of (bk);
  struct wlog_rec rec = { .type = WLOG_WRITE,
                          .off = off,
                          .len = len,
                          .flags = flags & BK_FUA ? WLOG_F_FUA : 0,
                          .data = buf };
  int r = w->inner->ops->pwrite_sync (w->inner, buf, off, len, flags);
  return r < 0 ? r : wlog_append (w->log, &rec);
}

static int
wl_flush_sync (struct backend *bk)
{
  struct wl_bk *w = wl_of (bk);
  struct wlog_rec rec = { .type = WLOG_FLUSH, .aux = wlog_count (w->log) };
  int r = w->inner->ops->flush_sync (w->inner);
  return r < 0 ? r : wlog_append (w->log, &rec);
}

static const struct backend_ops wl_ops = {
  .name = "wlog",
  .read = wl_read,
  .write = wl_write,
  .flush = wl_flush,
  .discard = wl_discard,
  .close = wl_close,
  .pread_sync = wl_pread_sync,
  .pwrite_sync = wl_pwrite_sync,
  .flush_sync = wl_flush_sync,
};

int
wlog_wrap (struct backend **bk, void *opaque)
{
  struct wl_bk *w = calloc (1, sizeof *w);
  if (!w)
    return -ENOMEM;
  w->pub = **bk; /* size, align, uri, ident, health */
  w->pub.ops = &wl_ops;
  w->pub.priv = w;
  w->inner = *bk;
  w->log = opaque;
  *bk = &w->pub;
  return 0;
}

/* --- reader --- */

static int
wlog_err (char *err, size_t errlen, const char *path, const char *what,
          uint64_t seq)
{
  snprintf (err, errlen, "%s: %s at record %llu", path, what,
            (unsigned long long) seq);
  return -1;
}

static int
wlog_check_header (const uint8_t *raw, size_t size, struct wlog_file *f,
                   const char *path, char *err, size_t errlen)
{
  if (size < WLOG_HEADER_SIZE || memcmp (raw, WLOG_MAGIC, 8) != 0)
    return wlog_err (err, errlen, path, "not a write log (bad magic)", 0);
  if (le32_get (raw + 60) != dscow_crc32c (0, raw, 60))
    return wlog_err (err, errlen, path, "header checksum mismatch", 0);
  if (le32_get (raw + 8) != WLOG_VERSION
      || le32_get (raw + 12) != WLOG_HEADER_SIZE
      || le32_get (raw + 24) != WLOG_SECTOR)
    return wlog_err (err, errlen, path, "unsupported log version", 0);
  f->dev_size = le64_get (raw + 16);
  return 0;
}

/* Decode the record at raw[*pos]; advance *pos past it. */
static int
wlog_decode (const uint8_t *raw, size_t size, size_t *pos, uint64_t seq,
             struct wlog_rec *r, const char *path, char *err, size_t errlen)
{
  uint8_t h[WLOG_REC_SIZE];
  if (size - *pos < WLOG_REC_SIZE)
    return wlog_err (err, errlen, path, "truncated record", seq);
  memcpy (h, raw + *pos, sizeof h);
  uint32_t plen = le32_get (h + 40), crc = le32_get (h + 44);
  *r = (struct wlog_rec){ .type = le16_get (h + 4),
                          .flags = le16_get (h + 6),
                          .seq = le64_get (h + 8),
                          .off = le64_get (h + 16),
                          .len = le64_get (h + 24),
                          .aux = le64_get (h + 32),
                          .data = raw + *pos + WLOG_REC_SIZE };
  le32_put (h + 44, 0);
  if (le32_get (h) != WLOG_REC_MAGIC || r->seq != seq)
    return wlog_err (err, errlen, path, "bad record magic or sequence", seq);
  if (plen != (r->type == WLOG_WRITE ? r->len : 0))
    return wlog_err (err, errlen, path, "bad payload length", seq);
  if (plen > size - *pos - WLOG_REC_SIZE)
    return wlog_err (err, errlen, path, "truncated record", seq);
  if (crc != dscow_crc32c (dscow_crc32c (0, h, sizeof h), r->data, plen))
    return wlog_err (err, errlen, path, "record checksum mismatch", seq);
  if (r->type < WLOG_WRITE || r->type > WLOG_MARK)
    return wlog_err (err, errlen, path, "unknown record type", seq);
  *pos += WLOG_REC_SIZE + plen;
  return 0;
}

static int
wlog_read_all (const char *path, uint8_t **raw, size_t *size, char *err,
               size_t errlen)
{
  FILE *fp = fopen (path, "rb");
  long n = -1;
  if (fp && fseek (fp, 0, SEEK_END) == 0)
    n = ftell (fp);
  *raw = n >= 0 ? malloc ((size_t) n + 1) : NULL;
  if (!*raw || fseek (fp, 0, SEEK_SET) != 0
      || fread (*raw, 1, (size_t) n, fp) != (size_t) n)
    {
      snprintf (err, errlen, "%s: cannot read the write log: %s", path,
                strerror (errno ? errno : EIO));
      if (fp)
        fclose (fp);
      return -1;
    }
  fclose (fp);
  *size = (size_t) n;
  return 0;
}

int
wlog_load (const char *path, struct wlog_file *f, char *err, size_t errlen)
{
  size_t size, pos = WLOG_HEADER_SIZE, cap = 1024;
  memset (f, 0, sizeof *f);
  if (wlog_read_all (path, &f->raw, &size, err, errlen) < 0)
    return -1;
  if (wlog_check_header (f->raw, size, f, path, err, errlen) < 0)
    goto fail;
  f->recs = malloc (cap * sizeof *f->recs);
  while (f->recs && pos < size)
    {
      if (f->n == cap)
        f->recs = realloc (f->recs, (cap *= 2) * sizeof *f->recs);
      if (f->recs
          && wlog_decode (f->raw, size, &pos, f->n, &f->recs[f->n], path, err,
                          errlen)
                 < 0)
        goto fail;
      f->n++;
    }
  if (f->recs)
    return 0;
  snprintf (err, errlen, "%s: out of memory for the write log", path);
fail:
  wlog_file_free (f);
  return -1;
}

void
wlog_file_free (struct wlog_file *f)
{
  free (f->recs);
  free (f->raw);
  memset (f, 0, sizeof *f);
}

/* --- replay --- */

static const uint8_t wlog_zero[65536];

static int
wlog_apply (int fd, const struct wlog_rec *r, uint64_t soff, uint64_t slen)
{
  uint64_t off = r->off + soff;
  while (slen > 0)
    {
      size_t n = slen;
      const void *src = r->data + soff;
      if (r->type == WLOG_DISCARD)
        n = n > sizeof wlog_zero ? sizeof wlog_zero : n, src = wlog_zero;
      ssize_t w = pwrite (fd, src, n, (off_t) off);
      if (w <= 0)
        return w < 0 ? -errno : -EIO;
      off += (uint64_t) w, soff += (uint64_t) w, slen -= (uint64_t) w;
    }
  return 0;
}

/* A write the device may have kept whole, not at all, or in part. */
static int
wlog_apply_volatile (int fd, const struct wlog_rec *r, unsigned *seed)
{
  uint64_t ns = (r->len + WLOG_SECTOR - 1) / WLOG_SECTOR;
  int fate = rand_r (seed) % 10;
  if (fate < 4)
    return wlog_apply (fd, r, 0, r->len);
  if (fate < 6 || ns < 2)
    return 0;
  if (fate < 8) /* the first k sectors, 0 < k < ns */
    return wlog_apply (fd, r, 0,
                       (1 + (uint64_t) rand_r (seed) % (ns - 1)) * WLOG_SECTOR);
  for (uint64_t s = 0; s < ns; s++) /* any subset of sectors */
    if (rand_r (seed) % 2)
      {
        int e = wlog_apply (fd, r, s * WLOG_SECTOR, WLOG_SECTOR);
        if (e < 0)
          return e;
      }
  return 0;
}

int
wlog_replay (const struct wlog_file *f, uint64_t point, bool tear,
             unsigned *seed, int fd)
{
  uint64_t durable = 0; /* records below this are flushed */
  if (point > f->n)
    return -EINVAL;
  for (uint64_t i = 0; i < point; i++)
    if (f->recs[i].type == WLOG_FLUSH && f->recs[i].aux > durable)
      durable = f->recs[i].aux;
  if (ftruncate (fd, 0) < 0 || ftruncate (fd, (off_t) f->dev_size) < 0)
    return -errno;
  for (uint64_t i = 0; i < point; i++)
    {
      const struct wlog_rec *r = &f->recs[i];
      int e = 0;
      if (r->type != WLOG_WRITE && r->type != WLOG_DISCARD)
        continue;
      if (!tear || i < durable || (r->flags & WLOG_F_FUA))
        e = wlog_apply (fd, r, 0, r->len);
      else
        e = wlog_apply_volatile (fd, r, seed);
      if (e < 0)
        return e;
    }
  return 0;
}
