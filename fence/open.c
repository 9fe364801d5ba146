/* SPDX-License-Identifier: GPL-2.0-or-later */
/* open.c: the one way to reach a LUN for fencing.
 *
 * fence_dev_open takes the name a volume gives its LUN and returns a
 * fence device that owns its transport:
 *   iscsi://[user%password@]host[:port]/iqn/lun   a new libiscsi session,
 *       logged in synchronously (fencing is a rare control operation),
 *       logged out by fence_dev_free;
 *   anything else   a SCSI block or sg device opened O_RDWR and driven
 *       through SG_IO, closed by fence_dev_free.
 * A registration belongs to the session that made it, so this session is
 * for reading keys and preempting others, never for this node's writes.
 * Errors are one sentence in err naming the LUN and the cause.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_LIBISCSI
#include <iscsi/iscsi.h>
#endif

#include "fence-int.h"

#ifdef HAVE_LIBISCSI
static struct fence_dev *
open_iscsi (const char *uri, const struct fence_login *login, char *err,
            size_t errlen)
{
  struct iscsi_context *ctx = iscsi_create_context (login->initiator);
  struct iscsi_url *u = ctx ? iscsi_parse_full_url (ctx, uri) : NULL;
  if (!u)
    {
      snprintf (err, errlen, "%s: not a usable iSCSI URL%s%s", uri,
                ctx ? ": " : "", ctx ? iscsi_get_error (ctx) : "");
      goto out_ctx;
    }
  iscsi_set_targetname (ctx, u->target);
  iscsi_set_session_type (ctx, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest (ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  iscsi_set_timeout (ctx, login->timeout_s > 0 ? login->timeout_s : 5);
  if (login->user && login->password)
    iscsi_set_initiator_username_pwd (ctx, login->user, login->password);
  int lun = u->lun;
  int r = iscsi_full_connect_sync (ctx, u->portal, lun);
  iscsi_destroy_url (u);
  if (r != 0)
    {
      snprintf (err, errlen, "%s: cannot log in to fence: %s", uri,
                iscsi_get_error (ctx));
      goto out_ctx;
    }
  struct fence_dev *dev = fence_dev_iscsi (ctx, lun, uri);
  if (dev)
    {
      dev->owned = true;
      return dev;
    }
  snprintf (err, errlen, "%s: %m", uri);
  iscsi_logout_sync (ctx);
out_ctx:
  if (ctx)
    iscsi_destroy_context (ctx);
  return NULL;
}
#endif

static struct fence_dev *
open_sg (const char *path, char *err, size_t errlen)
{
  int fd = open (path, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    {
      snprintf (err, errlen, "%s: cannot open it to fence: %m", path);
      return NULL;
    }
  struct fence_dev *dev = fence_dev_sg (fd, path, err, errlen);
  if (!dev)
    {
      int e = errno;
      close (fd);
      errno = e;
      return NULL;
    }
  dev->owned = true;
  return dev;
}

struct fence_dev *
fence_dev_open (const char *uri, const struct fence_login *login, char *err,
                size_t errlen)
{
  if (strncmp (uri, "iscsi://", 8) == 0)
    {
#ifdef HAVE_LIBISCSI
      return open_iscsi (uri, login, err, errlen);
#else
      snprintf (err, errlen, "%s: this build has no libiscsi", uri);
      errno = ENOTSUP;
      return NULL;
#endif
    }
  return open_sg (uri, err, errlen);
}

/* Called by fence_dev_free for a device fence_dev_open made. */
void
fence_dev_release (struct fence_dev *dev)
{
#ifdef HAVE_LIBISCSI
  if (dev->iscsi)
    {
      iscsi_logout_sync (dev->iscsi);
      iscsi_destroy_context (dev->iscsi);
    }
#endif
  if (dev->fd >= 0)
    close (dev->fd);
}
