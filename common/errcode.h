/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* errcode.h: the named errors an operator (or a script) must tell apart.
 *
 * Every failure that reaches cowctl carries one of these codes as well as
 * its sentence, the way tgtadm's errors and sanlock's SANLK_* do: scripts
 * (the Xen hotplug script, the Pacemaker agent) branch on the code, people
 * read the sentence.  The names are a published contract (cowctl(8),
 * ERRORS): a name is never renamed or reused; new ones go at the end.
 *
 * Functions that report a sentence in an err buffer return either a
 * negative code (-COW_E_*, all >= COW_E_FIRST) or a negative errno;
 * cow_err_code() turns either into a code, mapping the errnos that mean
 * one thing to an operator (EIO, ETIMEDOUT, ...) and the rest to
 * "internal".  Header-only: the engine, the daemon and the CLI share it.
 */
#ifndef COWHERD_ERRCODE_H
#define COWHERD_ERRCODE_H

#include <errno.h>
#include <string.h>

/* Room for one sentence with two full paths in it. */
#define COW_ERRLEN 8192

#define COW_ERRORS(X)                                                          \
  X (USAGE, "usage")                                                           \
  X (UNREACHABLE, "unreachable")                                               \
  X (NO_SUCH_VOLUME, "no-such-volume")                                         \
  X (EXISTS, "exists")                                                         \
  X (ATTACHED, "attached")                                                     \
  X (NOT_ATTACHED, "not-attached")                                             \
  X (NOT_OWNER, "not-owner")                                                   \
  X (NO_QUORUM, "no-quorum")                                                   \
  X (FENCED, "fenced")                                                         \
  X (DEGRADED, "degraded")                                                     \
  X (HELD, "held")                                                             \
  X (BOUNCING, "bouncing")                                                     \
  X (HANDOFF_FAILED, "handoff-failed")                                         \
  X (BASE_MISMATCH, "base-mismatch")                                           \
  X (COW_IN_USE, "cow-in-use")                                                 \
  X (COW_TOO_SMALL, "cow-too-small")                                           \
  X (BAD_SUPERBLOCK, "bad-superblock")                                         \
  X (IO, "io")                                                                 \
  X (TIMEOUT, "timeout")                                                       \
  X (NOT_CLUSTERED, "not-clustered")                                           \
  X (NO_SUCH_NODE, "no-such-node")                                             \
  X (INTERNAL, "internal")                                                     \
  X (BAD_DEVICE, "bad-device")                                                 \
  X (BUSY, "busy")                                                             \
  X (NO_SUCH_SNAPSHOT, "no-such-snapshot")                                     \
  X (NOT_RUNNING, "not-running")

#define COW_E_FIRST 1000
#define COW_ERR_ENUM(id, name) COW_E_##id,
enum cow_err
{
  COW_E_BEFORE_FIRST = COW_E_FIRST - 1,
  COW_ERRORS (COW_ERR_ENUM) COW_E_END
};
#undef COW_ERR_ENUM

/* The stable name of code c (a COW_E_*), "internal" for anything else. */
static inline const char *
cow_err_name (int c)
{
#define COW_ERR_NAME(id, name) name,
  static const char *const names[] = { COW_ERRORS (COW_ERR_NAME) };
#undef COW_ERR_NAME
  if (c < COW_E_FIRST || c >= COW_E_END)
    return "internal";
  return names[c - COW_E_FIRST];
}

/* The code for a negative return r: -COW_E_* as is, an errno mapped. */
static inline int
cow_err_code (int r)
{
  int e = r < 0 ? -r : r;
  if (e >= COW_E_FIRST && e < COW_E_END)
    return e;
  switch (e)
    {
    case EIO:
    case EREMOTEIO:
    case ENOLINK:
    case ECONNRESET:
    case ENOSPC:
    case EROFS:
      return COW_E_IO;
    case ETIMEDOUT:
      return COW_E_TIMEOUT;
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case EPERM:
    case EISDIR:
    case ENODEV:
    case ENXIO:
    case ENOTBLK:
      return COW_E_BAD_DEVICE;
    case EBUSY:
      return COW_E_BUSY;
    default:
      return COW_E_INTERNAL;
    }
}

#endif /* COWHERD_ERRCODE_H */
