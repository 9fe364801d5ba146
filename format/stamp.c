/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* stamp.c: has the base changed since the superblock recorded it?  Its
 * identity (base_id) and, for a file, its stamp (dscow.h, struct
 * dscow_base_stamp) are compared with what the agent finds now.
 *
 * The stamp is what stat(2) says of the base file: device, inode,
 * modification and change times in nanoseconds (the size is the
 * superblock's base_size, checked by dscow_check_devices).  Writing the
 * file changes mtime and ctime; replacing it (a copy renamed over it, a
 * restored backup) changes the inode.  Comparing costs one fstat at open
 * and nothing per IO.  What it cannot see is documented in dscow(5):
 * a write that sets both times back, a change by a host that does not
 * update times (a raw write under the file system), and any change of
 * block devices and LUNs, whose identity is their VPD or WWID and size.
 *
 * A device number alone that differs is reported apart (dev_moved): the
 * number of a file system can change across a reboot (device-mapper
 * minors are allocated at activation) while inode and times still name
 * the same untouched file.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dscow.h"

/* "2026-11-30 18:20:01.123456789 UTC" */
static void
stamp_time (uint64_t ns, char *out, size_t len)
{
  time_t s = (time_t) (ns / 1000000000u);
  struct tm tm;
  char day[32];
  if (!gmtime_r (&s, &tm) || !strftime (day, sizeof day, "%F %T", &tm))
    snprintf (day, sizeof day, "%" PRIu64, ns / 1000000000u);
  snprintf (out, len, "%s.%09" PRIu64 " UTC", day, ns % 1000000000u);
}

static void
stamp_add (char *what, size_t len, const char *field, const char *was,
           const char *now)
{
  size_t n = strlen (what);
  if (n < len)
    snprintf (what + n, len - n, "%s%s %s -> %s", n ? ", " : "", field, was,
              now);
}

static void
stamp_add_time (char *what, size_t len, const char *field, uint64_t was,
                uint64_t now)
{
  char a[64], b[64];
  stamp_time (was, a, sizeof a);
  stamp_time (now, b, sizeof b);
  stamp_add (what, len, field, a, b);
}

int
dscow_base_changed (const struct dscow_super *sb,
                    const struct dscow_base_stamp *now, const char *now_id,
                    char *what, size_t len, bool *dev_moved)
{
  const struct dscow_base_stamp *rec = &sb->stamp;
  bool stamps = rec->kind != DSCOW_STAMP_NONE && now->kind != DSCOW_STAMP_NONE;
  *dev_moved = false;
  if (len)
    what[0] = '\0';
  if (stamps && rec->ino != now->ino)
    {
      char a[24], b[24];
      snprintf (a, sizeof a, "%" PRIu64, rec->ino);
      snprintf (b, sizeof b, "%" PRIu64, now->ino);
      stamp_add (what, len, "inode", a, b);
    }
  if (stamps && rec->mtime_ns != now->mtime_ns)
    stamp_add_time (what, len, "modification time", rec->mtime_ns,
                    now->mtime_ns);
  if (stamps && rec->ctime_ns != now->ctime_ns)
    stamp_add_time (what, len, "change time", rec->ctime_ns, now->ctime_ns);
  if (strcmp (sb->base_id, now_id) != 0)
    stamp_add (what, len, "identity", sb->base_id, now_id);
  if (len && what[0])
    return -DSCOW_EBASECHANGED;
  *dev_moved = stamps && rec->dev != now->dev;
  return 0;
}
