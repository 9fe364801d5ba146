/* backend.c: open a backend by URI.  "iscsi://" URLs go to libiscsi
 * (backend-iscsi.c); anything else is a path to a regular file or a block
 * device (backend-file.c).  See backend.h for the contract. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "clock.h"

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
      snprintf (err, errlen, "%s: unsupported URL scheme (use a path or iscsi://)",
                uri);
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
