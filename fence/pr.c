/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pr.c: the transport-independent fencing logic on top of one PERSISTENT
 * RESERVE OUT / IN command per transport call (fence-int.h).
 *
 * Every command is sent again while it comes back UNIT ATTENTION (a new
 * session, a reset, "reservations preempted"), at most PR_UA_RETRIES times.
 *
 *   register    REGISTER AND IGNORE EXISTING KEY (SA 6) with the key as the
 *               service action key: idempotent, and right after a re-login.
 *   reserve     READ RESERVATION first: a type 5 reservation held by anyone
 *               is fine (every registrant may write); none -> RESERVE type
 *               5; a conflict there is looked at again (another node may
 *               have reserved in between).
 *   preempt     READ KEYS: our key must be registered, a victim key already
 *               gone means the victim is already fenced.  PREEMPT AND ABORT
 *               (SA 5) type 5; on ILLEGAL REQUEST plain PREEMPT (SA 4).  A
 *               preempt of the holder's key moves the type 5 reservation to
 *               us; READ KEYS and READ RESERVATION check the result, and we
 *               reserve if the target left the LUN without a reservation.
 *   unregister  REGISTER AND IGNORE EXISTING KEY with service action key 0.
 *   clear       CLEAR (SA 3): every registration and the reservation go.
 *
 * Errors are one sentence in dev->err: "fence: LABEL: WHAT failed: CAUSE".
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fence-int.h"

#define PR_UA_RETRIES 8
#define PR_MAX_KEYS 1024

/* Devices and messages */

struct fence_dev *
fence_dev_new (const struct fence_ops *ops, const char *label)
{
  struct fence_dev *dev = calloc (1, sizeof *dev);

  if (!dev)
    return NULL;
  dev->label = strdup (label ? label : "(unnamed device)");
  if (!dev->label)
    {
      free (dev);
      return NULL;
    }
  dev->ops = ops;
  dev->fd = -1;
  return dev;
}

void
fence_dev_free (struct fence_dev *dev)
{
  if (!dev)
    return;
  if (dev->ops->free)
    dev->ops->free (dev);
  if (dev->owned)
    fence_dev_release (dev);
  free (dev->label);
  free (dev);
}

struct iscsi_context *
fence_dev_iscsi_context (const struct fence_dev *dev, int *lun)
{
  *lun = dev->lun;
  return dev->iscsi;
}

const char *
fence_dev_label (const struct fence_dev *dev)
{
  return dev->label;
}

const char *
fence_last_error (const struct fence_dev *dev)
{
  return dev->err[0] ? dev->err : "no error";
}

const char *
fence_type_name (int type)
{
  switch (type)
    {
    case 1:
      return "WRITE EXCLUSIVE";
    case 3:
      return "EXCLUSIVE ACCESS";
    case 5:
      return "WRITE EXCLUSIVE - REGISTRANTS ONLY";
    case 6:
      return "EXCLUSIVE ACCESS - REGISTRANTS ONLY";
    case 7:
      return "WRITE EXCLUSIVE - ALL REGISTRANTS";
    case 8:
      return "EXCLUSIVE ACCESS - ALL REGISTRANTS";
    default:
      return "unknown type";
    }
}

static const char *
pr_sense_key_name (uint8_t key)
{
  static const char *const names[16] = {
    "NO SENSE",       "RECOVERED ERROR", "NOT READY",      "MEDIUM ERROR",
    "HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
    "BLANK CHECK",    "VENDOR SPECIFIC", "COPY ABORTED",   "ABORTED COMMAND",
    "OBSOLETE",       "VOLUME OVERFLOW", "MISCOMPARE",     "COMPLETED",
  };
  return names[key & 0xf];
}

static const char *
pr_asc_name (uint8_t asc, uint8_t ascq)
{
  switch (asc << 8 | ascq)
    {
    case 0x2000:
      return "invalid command operation code";
    case 0x2400:
      return "invalid field in CDB";
    case 0x2500:
      return "logical unit not supported";
    case 0x2600:
      return "invalid field in parameter list";
    case 0x2900:
      return "power on, reset or bus device reset occurred";
    case 0x2a03:
      return "reservations preempted";
    case 0x2a04:
      return "reservations released";
    case 0x2a05:
      return "registrations preempted";
    case 0x3f0e:
      return "reported LUNs data has changed";
    case 0x5502:
      return "insufficient registration resources";
    default:
      return asc == 0x04 ? "logical unit not ready" : NULL;
    }
}

void
fence_status_str (const struct fence_status *st, char *buf, size_t len)
{
  const char *asc;

  if (st->transport_failed)
    snprintf (buf, len, "%s", st->cause);
  else if (st->status == FENCE_STATUS_RESERVATION_CONFLICT)
    snprintf (buf, len, "RESERVATION CONFLICT");
  else if (st->status == FENCE_STATUS_CHECK_CONDITION && st->have_sense)
    {
      asc = pr_asc_name (st->asc, st->ascq);
      snprintf (buf, len, "CHECK CONDITION, %s %02X/%02X%s%s%s",
                pr_sense_key_name (st->key), st->asc, st->ascq, asc ? " (" : "",
                asc ? asc : "", asc ? ")" : "");
    }
  else if (st->status == FENCE_STATUS_CHECK_CONDITION)
    snprintf (buf, len, "CHECK CONDITION without sense data");
  else if (st->status == FENCE_STATUS_BUSY)
    snprintf (buf, len, "BUSY");
  else
    snprintf (buf, len, "SCSI status 0x%02x", st->status);
}

static void __attribute__ ((format (printf, 2, 3)))
pr_error (struct fence_dev *dev, const char *fmt, ...)
{
  va_list ap;
  int n = snprintf (dev->err, sizeof dev->err, "fence: %s: ", dev->label);

  va_start (ap, fmt);
  vsnprintf (dev->err + n, sizeof dev->err - n, fmt, ap);
  va_end (ap);
}

static int
pr_errno (const struct fence_status *st)
{
  if (st->transport_failed)
    return st->err ? st->err : EIO;
  if (st->status == FENCE_STATUS_RESERVATION_CONFLICT)
    return EACCES;
  if (st->status == FENCE_STATUS_CHECK_CONDITION && st->have_sense
      && st->key == FENCE_SENSE_ILLEGAL_REQUEST)
    return EOPNOTSUPP;
  return EIO;
}

/* "WHAT failed: CAUSE", errno set from the status; returns -1. */
static int
pr_fail (struct fence_dev *dev, const struct fence_status *st, const char *what)
{
  char cause[256];

  fence_status_str (st, cause, sizeof cause);
  pr_error (dev, "%s failed: %s", what, cause);
  errno = pr_errno (st);
  return -1;
}

static const char *
pr_key_str (uint64_t key, char *buf, size_t len)
{
  snprintf (buf, len, "node %" PRIu32 "'s key 0x%016" PRIx64,
            fence_key_nodeid (key), key);
  return buf;
}

/* Commands with the UNIT ATTENTION retry */

static bool
pr_is_ua (const struct fence_status *st)
{
  return !st->transport_failed && st->status == FENCE_STATUS_CHECK_CONDITION
         && st->have_sense && st->key == FENCE_SENSE_UNIT_ATTENTION;
}

static bool
pr_good (const struct fence_status *st)
{
  return !st->transport_failed && st->status == FENCE_STATUS_GOOD;
}

static void
pr_out (struct fence_dev *dev, const struct fence_prout *p,
        struct fence_status *st)
{
  for (int i = 0; i <= PR_UA_RETRIES; i++)
    {
      memset (st, 0, sizeof *st);
      if (dev->ops->prout (dev, p, st) < 0 || !pr_is_ua (st))
        return;
    }
}

static void
pr_in (struct fence_dev *dev, enum fence_prin_sa sa, uint8_t *buf, size_t len,
       size_t *got, struct fence_status *st)
{
  for (int i = 0; i <= PR_UA_RETRIES; i++)
    {
      memset (st, 0, sizeof *st);
      *got = 0;
      if (dev->ops->prin (dev, sa, buf, len, got, st) < 0 || !pr_is_ua (st))
        return;
    }
}

/* Payload decoders (SPC-4 6.15.2, 6.15.3), pure */

int
fence_parse_keys (const uint8_t *buf, size_t len, uint64_t *keys, size_t max,
                  size_t *n, uint32_t *generation)
{
  uint32_t addl;
  size_t avail;

  if (len < 8)
    return -1;
  addl = be32_get (buf + 4);
  if (addl % 8)
    return -1;
  if (generation)
    *generation = be32_get (buf);
  *n = addl / 8;
  avail = (len - 8) / 8;
  for (size_t i = 0; i < *n && i < avail && i < max; i++)
    keys[i] = be64_get (buf + 8 + 8 * i);
  return 0;
}

int
fence_parse_reservation (const uint8_t *buf, size_t len, uint64_t *holder,
                         int *type, bool *held)
{
  uint32_t addl;

  if (len < 8)
    return -1;
  addl = be32_get (buf + 4);
  *held = false;
  *holder = 0;
  *type = 0;
  if (addl == 0)
    return 0;
  if (addl < 16 || len < 24)
    return -1;
  *held = true;
  *holder = be64_get (buf + 8);
  *type = buf[21] & 0x0f;
  return 0;
}

/* Reading */

int
fence_read_keys (struct fence_dev *dev, uint64_t *keys, size_t max, size_t *n,
                 uint32_t *generation)
{
  size_t nkeys = max < PR_MAX_KEYS ? max : PR_MAX_KEYS;
  size_t len = 8 + 8 * nkeys, got;
  struct fence_status st;
  uint8_t *buf = calloc (1, len);
  int r = -1;

  if (!buf)
    {
      pr_error (dev, "READ KEYS failed: out of memory");
      return -1;
    }
  pr_in (dev, FENCE_SA_READ_KEYS, buf, len, &got, &st);
  if (!pr_good (&st))
    pr_fail (dev, &st, "PERSISTENT RESERVE IN READ KEYS");
  else if (fence_parse_keys (buf, got, keys, max, n, generation) < 0)
    {
      pr_error (dev, "READ KEYS failed: malformed reply (%zu bytes)", got);
      errno = EIO;
    }
  else
    r = 0;
  free (buf);
  return r;
}

int
fence_read_reservation (struct fence_dev *dev, uint64_t *holder, int *type,
                        bool *held)
{
  uint8_t buf[24];
  size_t got;
  struct fence_status st;

  pr_in (dev, FENCE_SA_READ_RESERVATION, buf, sizeof buf, &got, &st);
  if (!pr_good (&st))
    return pr_fail (dev, &st, "PERSISTENT RESERVE IN READ RESERVATION");
  if (fence_parse_reservation (buf, got, holder, type, held) < 0)
    {
      pr_error (dev, "READ RESERVATION failed: malformed reply (%zu bytes)",
                got);
      errno = EIO;
      return -1;
    }
  return 0;
}

int
fence_key_listed (struct fence_dev *dev, uint64_t key)
{
  uint64_t keys[PR_MAX_KEYS];
  size_t n;

  if (fence_read_keys (dev, keys, PR_MAX_KEYS, &n, NULL) < 0)
    return -1;
  for (size_t i = 0; i < n && i < PR_MAX_KEYS; i++)
    if (keys[i] == key)
      return 1;
  return 0;
}

/* Registration */

int
fence_register (struct fence_dev *dev, uint64_t key)
{
  struct fence_prout p = { .sa = FENCE_SA_REGISTER_IGNORE, .sa_key = key };
  struct fence_status st;
  char what[128], k[64];

  if (key == 0)
    {
      pr_error (dev, "REGISTER failed: key 0 is not a valid key");
      errno = EINVAL;
      return -1;
    }
  pr_out (dev, &p, &st);
  if (pr_good (&st))
    return 0;
  snprintf (what, sizeof what, "REGISTER of %s", pr_key_str (key, k, sizeof k));
  return pr_fail (dev, &st, what);
}

int
fence_unregister (struct fence_dev *dev, uint64_t key)
{
  struct fence_prout p = { .sa = FENCE_SA_REGISTER_IGNORE, .sa_key = 0 };
  struct fence_status st;
  char what[128], k[64];

  pr_out (dev, &p, &st);
  if (pr_good (&st))
    return 0;
  snprintf (what, sizeof what, "unregistering %s",
            pr_key_str (key, k, sizeof k));
  return pr_fail (dev, &st, what);
}

int
fence_clear (struct fence_dev *dev, uint64_t key)
{
  struct fence_prout p = { .sa = FENCE_SA_CLEAR, .key = key };
  struct fence_status st;
  char what[128], k[64];

  pr_out (dev, &p, &st);
  if (pr_good (&st))
    return 0;
  snprintf (what, sizeof what, "CLEAR with %s", pr_key_str (key, k, sizeof k));
  return pr_fail (dev, &st, what);
}

/* Reservation */

/* 1: a type 5 reservation is in place, 0: none, -1 error (set). */
static int
pr_reserved (struct fence_dev *dev)
{
  uint64_t holder;
  int type;
  bool held;
  char k[64];

  if (fence_read_reservation (dev, &holder, &type, &held) < 0)
    return -1;
  if (!held)
    return 0;
  if (type == FENCE_TYPE_WRITE_EXCLUSIVE_RO)
    return 1;
  pr_error (dev,
            "the LUN carries a reservation of type %d (%s) held by "
            "%s, not type 5",
            type, fence_type_name (type), pr_key_str (holder, k, sizeof k));
  errno = EBUSY;
  return -1;
}

int
fence_reserve (struct fence_dev *dev, uint64_t key)
{
  struct fence_prout p = { .sa = FENCE_SA_RESERVE,
                           .key = key,
                           .type = FENCE_TYPE_WRITE_EXCLUSIVE_RO };
  struct fence_status st;
  char what[128], k[64];
  int r;

  if ((r = pr_reserved (dev)) != 0)
    return r < 0 ? -1 : 0;
  pr_out (dev, &p, &st);
  if (pr_good (&st))
    return 0;
  /* Somebody may have reserved between our read and our RESERVE. */
  if (st.status == FENCE_STATUS_RESERVATION_CONFLICT && !st.transport_failed
      && pr_reserved (dev) == 1)
    return 0;
  snprintf (what, sizeof what, "RESERVE (type 5) with %s",
            pr_key_str (key, k, sizeof k));
  return pr_fail (dev, &st, what);
}

/* Preemption */

static int
pr_preempt_checks (struct fence_dev *dev, uint64_t my_key, uint64_t victim_key)
{
  char k[64];
  int r;

  if (my_key == 0 || victim_key == 0 || my_key == victim_key)
    {
      pr_error (dev,
                "PREEMPT of %s failed: invalid key (ours 0x%016" PRIx64 ")",
                pr_key_str (victim_key, k, sizeof k), my_key);
      errno = EINVAL;
      return -1;
    }
  if ((r = fence_key_listed (dev, my_key)) < 0)
    return -1;
  if (r == 0)
    {
      pr_error (dev,
                "cannot fence: this node's key 0x%016" PRIx64 " (node %" PRIu32
                ") is not registered",
                my_key, fence_key_nodeid (my_key));
      errno = ENOENT;
      return -1;
    }
  return fence_key_listed (dev, victim_key);
}

/* The PREEMPT AND ABORT, or the PREEMPT fallback. */
static int
pr_preempt_send (struct fence_dev *dev, uint64_t my_key, uint64_t victim_key)
{
  struct fence_prout p = { .sa = FENCE_SA_PREEMPT_AND_ABORT,
                           .key = my_key,
                           .sa_key = victim_key,
                           .type = FENCE_TYPE_WRITE_EXCLUSIVE_RO };
  struct fence_status st;
  char what[128], k[64];

  pr_out (dev, &p, &st);
  if (!st.transport_failed && st.status == FENCE_STATUS_CHECK_CONDITION
      && st.have_sense && st.key == FENCE_SENSE_ILLEGAL_REQUEST)
    {
      p.sa = FENCE_SA_PREEMPT;
      pr_out (dev, &p, &st);
    }
  if (pr_good (&st))
    return 0;
  snprintf (what, sizeof what, "%s of %s",
            p.sa == FENCE_SA_PREEMPT ? "PREEMPT" : "PREEMPT AND ABORT",
            pr_key_str (victim_key, k, sizeof k));
  return pr_fail (dev, &st, what);
}

int
fence_preempt (struct fence_dev *dev, uint64_t my_key, uint64_t victim_key)
{
  char k[64];
  int r;

  if ((r = pr_preempt_checks (dev, my_key, victim_key)) <= 0)
    return r; /* error, or the victim is already gone */
  if (pr_preempt_send (dev, my_key, victim_key) < 0)
    return -1;
  if ((r = fence_key_listed (dev, victim_key)) < 0)
    return -1;
  if (r == 1)
    {
      pr_error (dev, "PREEMPT of %s failed: the target still lists the key",
                pr_key_str (victim_key, k, sizeof k));
      errno = EIO;
      return -1;
    }
  /* A victim that held the reservation passed it to us; make sure the LUN
   * is reserved in any case, or unregistered hosts could write. */
  return fence_reserve (dev, my_key);
}
