/* SPDX-License-Identifier: GPL-2.0-or-later */
/* backend.c: open a backend by URI.  "iscsi://" URLs go to libiscsi
 * (backend-iscsi.c); anything else is a path to a regular file or a block
 * device (backend-file.c).  See backend.h for the contract. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "backend.h"
#include "clock.h"
#ifdef HAVE_ISCSI_BACKEND
#include "backend-iscsi.h"
#endif

static int backend_open_uri (const char *uri, const struct backend_opts *opts,
                             struct backend **out, char *err, size_t errlen);

int
backend_open (const char *uri, const struct backend_opts *opts,
              struct backend **out, char *err, size_t errlen)
{
  int r = backend_open_uri (uri, opts, out, err, errlen);
  if (r < 0 || !opts->wrap || !opts->writable)
    return r;
  if ((r = opts->wrap (out, opts->wrap_opaque)) < 0)
    {
      snprintf (err, errlen, "%s: the layer under it failed: %s", uri,
                strerror (-r));
      backend_close (*out);
      *out = NULL;
    }
  return r;
}

static int
backend_open_uri (const char *uri, const struct backend_opts *opts,
                  struct backend **out, char *err, size_t errlen)
{
  *out = NULL;
  if (strncmp (uri, "iscsi://", 8) == 0)
    {
#ifdef HAVE_ISCSI_BACKEND
      return backend_iscsi_open (uri, opts, out, err, errlen);
#else
      snprintf (err, errlen, "%s: this cowd was built without libiscsi", uri);
      return -ENOTSUP;
#endif
    }
  if (strstr (uri, "://"))
    {
      snprintf (err, errlen,
                "%s: unsupported URL scheme (use a path or iscsi://)", uri);
      return -EINVAL;
    }
  return backend_file_open (uri, opts, out, err, errlen);
}

void
backend_close (struct backend *bk)
{
  if (bk)
    bk->ops->close (bk);
}

int
backend_start_loop (struct backend *bk, char *err, size_t errlen)
{
  return bk && bk->ops->start_loop ? bk->ops->start_loop (bk, err, errlen) : 0;
}

int
backend_pread_sync (struct backend *bk, void *buf, uint64_t off, size_t len)
{
  uint64_t t0 = clock_now_ns ();
  int r = bk->ops->pread_sync (bk, buf, off, len);
  bk->sync_ns += clock_now_ns () - t0;
  return r;
}

int
backend_pwrite_sync (struct backend *bk, const void *buf, uint64_t off,
                     size_t len, unsigned flags)
{
  uint64_t t0 = clock_now_ns ();
  int r = bk->ops->pwrite_sync (bk, buf, off, len, flags);
  bk->sync_ns += clock_now_ns () - t0;
  return r;
}

int
backend_flush_sync (struct backend *bk)
{
  uint64_t t0 = clock_now_ns ();
  int r = bk->ops->flush_sync (bk);
  bk->sync_ns += clock_now_ns () - t0;
  return r;
}

void
backend_key_stat (const struct stat *st, char *key, size_t len)
{
  if (S_ISBLK (st->st_mode))
    snprintf (key, len, "blk:%u:%u", major (st->st_rdev), minor (st->st_rdev));
  else
    snprintf (key, len, "file:%" PRIx64 ":%" PRIx64, (uint64_t) st->st_dev,
              (uint64_t) st->st_ino);
}

void
backend_key (const char *uri, char *key, size_t len)
{
  struct stat st;
  if (strncmp (uri, "iscsi://", 8) == 0)
    {
      char *u = NULL;
#ifdef HAVE_ISCSI_BACKEND
      u = backend_iscsi_uri (uri);
#endif
      snprintf (key, len, "iscsi:%s", u ? u : uri);
      free (u);
    }
  else if (stat (uri, &st) == 0)
    backend_key_stat (&st, key, len);
  else
    snprintf (key, len, "path:%s", uri);
}
