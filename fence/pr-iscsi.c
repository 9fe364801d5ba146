/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pr-iscsi.c: PERSISTENT RESERVE OUT / IN through libiscsi, on a session
 * the caller owns (cowd's iSCSI backend hands over its context, since a
 * registration belongs to the I_T nexus that made it).
 *
 * libiscsi's synchronous calls run the context's own event loop until the
 * task completes, so the caller must not be in the middle of servicing
 * that context (call from the main loop, between dispatches).  A task that
 * never came back (NULL, or a libiscsi CANCELLED / ERROR / TIMEOUT status)
 * is a transport failure; otherwise the SCSI status and sense go to pr.c.
 * The READ KEYS / READ RESERVATION payloads are decoded by pr.c's own
 * decoders from the raw data-in, as for SG_IO.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fence-int.h"

#ifdef HAVE_LIBISCSI

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static int
pri_status (struct fence_dev *dev, struct scsi_task *t, struct fence_status *st)
{
  if (!t)
    {
      st->transport_failed = true;
      st->err = EIO;
      snprintf (st->cause, sizeof st->cause, "iSCSI error: %s",
                iscsi_get_error (dev->iscsi));
      return -1;
    }
  if (t->status >= SCSI_STATUS_CANCELLED)
    {
      st->transport_failed = true;
      st->err = t->status == SCSI_STATUS_TIMEOUT ? ETIMEDOUT : EIO;
      snprintf (st->cause, sizeof st->cause, "iSCSI task %s: %s",
                t->status == SCSI_STATUS_CANCELLED ? "cancelled"
                : t->status == SCSI_STATUS_TIMEOUT ? "timed out"
                                                   : "failed",
                iscsi_get_error (dev->iscsi));
      return -1;
    }
  st->status = t->status;
  if (t->status == SCSI_STATUS_CHECK_CONDITION)
    {
      st->have_sense = true;
      st->key = t->sense.key & 0x0f;
      st->asc = (t->sense.ascq >> 8) & 0xff;
      st->ascq = t->sense.ascq & 0xff;
    }
  return 0;
}

static int
pri_prout (struct fence_dev *dev, const struct fence_prout *p,
           struct fence_status *st)
{
  struct scsi_persistent_reserve_out_basic params = {
    .reservation_key = p->key,
    .service_action_reservation_key = p->sa_key,
  };
  struct scsi_task *t;
  int r;

  t = iscsi_persistent_reserve_out_sync (dev->iscsi, dev->lun, p->sa,
                                         SCSI_PERSISTENT_RESERVE_SCOPE_LU,
                                         p->type, &params);
  r = pri_status (dev, t, st);
  if (t)
    scsi_free_scsi_task (t);
  return r;
}

static int
pri_prin (struct fence_dev *dev, enum fence_prin_sa sa, uint8_t *buf,
          size_t len, size_t *got, struct fence_status *st)
{
  struct scsi_task *t;
  size_t n;
  int r;

  if (len > 0xffff)
    len = 0xffff;
  t = iscsi_persistent_reserve_in_sync (dev->iscsi, dev->lun, sa, len);
  r = pri_status (dev, t, st);
  if (r == 0 && t->datain.data && t->datain.size > 0)
    {
      n = (size_t) t->datain.size < len ? (size_t) t->datain.size : len;
      memcpy (buf, t->datain.data, n);
      *got = n;
    }
  if (t)
    scsi_free_scsi_task (t);
  return r;
}

static const struct fence_ops pri_ops = {
  .prout = pri_prout,
  .prin = pri_prin,
};

struct fence_dev *
fence_dev_iscsi (struct iscsi_context *iscsi, int lun, const char *label)
{
  struct fence_dev *dev = fence_dev_new (&pri_ops, label);

  if (!dev)
    return NULL;
  dev->iscsi = iscsi;
  dev->lun = lun;
  return dev;
}

#else /* !HAVE_LIBISCSI */

struct fence_dev *
fence_dev_iscsi (struct iscsi_context *iscsi, int lun, const char *label)
{
  (void) iscsi;
  (void) lun;
  (void) label;
  errno = ENOTSUP;
  return NULL;
}

#endif /* HAVE_LIBISCSI */
