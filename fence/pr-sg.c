/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pr-sg.c: PERSISTENT RESERVE OUT / IN through the SG_IO ioctl on an open
 * SCSI block device (an open-iscsi /dev/disk/by-path/...-lun-N, /dev/sdX)
 * or /dev/sgN.  The commands are built by hand:
 *
 *   PR OUT (10-byte CDB)  5F | SA | scope<<4|type | 0 0 | param len (be32)
 *                         | control; parameter list of 24 bytes:
 *                         reservation key (be64), service action key
 *                         (be64), obsolete (4), flags, 0, obsolete (2)
 *   PR IN  (10-byte CDB)  5E | SA | 0 0 0 0 0 | allocation length (be16)
 *                         | control
 *
 * Sense data comes back in fixed (70h/71h: key in byte 2, ASC/ASCQ in
 * bytes 12/13) or descriptor format (72h/73h: bytes 1, 2, 3).  The CDB,
 * parameter and sense codecs are pure functions (fence-int.h) so the unit
 * test checks them without a device.
 *
 * A device that does not take SG_IO at all (a loop device, a FUSE file, an
 * NBD device) answers the SG_GET_VERSION_NUM probe in fence_dev_sg with
 * ENOTTY or EINVAL; it cannot carry a reservation, and we say so.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <scsi/sg.h>

#include "fence-int.h"

#define SG_TIMEOUT_MS 30000
#define SG_SENSE_LEN 64
#define SG_DRIVER_SENSE 0x08

/* Pure codecs */

void
fence_sg_prout_cdb (uint8_t cdb[FENCE_CDB_LEN], const struct fence_prout *p)
{
  memset (cdb, 0, FENCE_CDB_LEN);
  cdb[0] = FENCE_OP_PROUT;
  cdb[1] = p->sa & 0x1f;
  cdb[2] = p->type & 0x0f; /* scope 0: the logical unit */
  cdb[8] = FENCE_PROUT_PARAM_LEN;
}

void
fence_sg_prout_params (uint8_t params[FENCE_PROUT_PARAM_LEN],
                       const struct fence_prout *p)
{
  memset (params, 0, FENCE_PROUT_PARAM_LEN);
  be64_put (params, p->key);
  be64_put (params + 8, p->sa_key);
}

void
fence_sg_prin_cdb (uint8_t cdb[FENCE_CDB_LEN], enum fence_prin_sa sa,
                   uint16_t alloc_len)
{
  memset (cdb, 0, FENCE_CDB_LEN);
  cdb[0] = FENCE_OP_PRIN;
  cdb[1] = sa & 0x1f;
  cdb[7] = alloc_len >> 8;
  cdb[8] = alloc_len & 0xff;
}

bool
fence_sense_parse (const uint8_t *sb, size_t len, struct fence_status *st)
{
  uint8_t code;

  if (len < 1)
    return false;
  code = sb[0] & 0x7f;
  if ((code == 0x70 || code == 0x71) && len >= 3)
    {
      st->key = sb[2] & 0x0f;
      st->asc = len >= 14 && sb[7] >= 6 ? sb[12] : 0;
      st->ascq = len >= 14 && sb[7] >= 6 ? sb[13] : 0;
    }
  else if ((code == 0x72 || code == 0x73) && len >= 4)
    {
      st->key = sb[1] & 0x0f;
      st->asc = sb[2];
      st->ascq = sb[3];
    }
  else
    return false;
  st->have_sense = true;
  return true;
}

/* The ioctl */

static bool
sg_unsupported (int err)
{
  return err == ENOTTY || err == EINVAL || err == EOPNOTSUPP;
}

static void
sg_transport_error (struct fence_status *st, const char *what, unsigned v)
{
  st->transport_failed = true;
  st->err = EIO;
  snprintf (st->cause, sizeof st->cause, "SG_IO %s status 0x%02x", what, v);
}

static int
sg_exec (struct fence_dev *dev, const uint8_t *cdb, int dir, void *buf,
         size_t len, size_t *got, struct fence_status *st)
{
  uint8_t sense[SG_SENSE_LEN] = { 0 };
  sg_io_hdr_t io = {
    .interface_id = 'S',
    .dxfer_direction = dir,
    .cmd_len = FENCE_CDB_LEN,
    .mx_sb_len = sizeof sense,
    .dxfer_len = len,
    .dxferp = buf,
    .cmdp = (unsigned char *) cdb,
    .sbp = sense,
    .timeout = SG_TIMEOUT_MS,
  };

  if (ioctl (dev->fd, SG_IO, &io) < 0)
    {
      int e = errno;
      st->transport_failed = true;
      st->err = sg_unsupported (e) ? EOPNOTSUPP : e;
      snprintf (st->cause, sizeof st->cause, "%s (SG_IO: %s)",
                sg_unsupported (e)
                    ? "the device does not support SCSI persistent reservations"
                    : "SG_IO failed",
                strerror (e));
      return -1;
    }
  if (io.host_status != 0)
    {
      sg_transport_error (st, "host", io.host_status);
      return -1;
    }
  if ((io.driver_status & 0x0f) != 0
      && (io.driver_status & 0x0f) != SG_DRIVER_SENSE)
    {
      sg_transport_error (st, "driver", io.driver_status);
      return -1;
    }
  st->status = io.status;
  if (io.status == FENCE_STATUS_CHECK_CONDITION)
    fence_sense_parse (sense, io.sb_len_wr, st);
  if (got)
    *got = io.resid > 0 && (size_t) io.resid <= len ? len - io.resid : len;
  return 0;
}

static int
sg_prout (struct fence_dev *dev, const struct fence_prout *p,
          struct fence_status *st)
{
  uint8_t cdb[FENCE_CDB_LEN], params[FENCE_PROUT_PARAM_LEN];

  fence_sg_prout_cdb (cdb, p);
  fence_sg_prout_params (params, p);
  return sg_exec (dev, cdb, SG_DXFER_TO_DEV, params, sizeof params, NULL, st);
}

static int
sg_prin (struct fence_dev *dev, enum fence_prin_sa sa, uint8_t *buf, size_t len,
         size_t *got, struct fence_status *st)
{
  uint8_t cdb[FENCE_CDB_LEN];

  if (len > 0xffff)
    len = 0xffff;
  fence_sg_prin_cdb (cdb, sa, len);
  return sg_exec (dev, cdb, SG_DXFER_FROM_DEV, buf, len, got, st);
}

static const struct fence_ops sg_ops = {
  .prout = sg_prout,
  .prin = sg_prin,
};

struct fence_dev *
fence_dev_sg (int fd, const char *label, char *err, size_t errlen)
{
  struct fence_dev *dev;
  int version;

  if (ioctl (fd, SG_GET_VERSION_NUM, &version) < 0)
    {
      int e = errno;
      snprintf (err, errlen,
                "fence: device %s does not support SCSI "
                "persistent reservations (SG_IO not supported: %s)",
                label, strerror (e));
      errno = sg_unsupported (e) ? EOPNOTSUPP : e;
      return NULL;
    }
  if (!(dev = fence_dev_new (&sg_ops, label)))
    {
      snprintf (err, errlen, "fence: device %s: out of memory", label);
      errno = ENOMEM;
      return NULL;
    }
  dev->fd = fd;
  return dev;
}
