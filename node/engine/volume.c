/* SPDX-License-Identifier: GPL-2.0-or-later */
/* volume.c: a volume's life: format, open, hold/resume, takeover, close;
 * and the engine's entry points, which turn a client request into a
 * struct vreq for vol-io.c.
 *
 * States (enum vol_state):
 *   ACTIVE    serving reads and writes
 *   HELD      new requests queue on held_head (handoff, quorum loss,
 *             close); `drained` fires once nothing is in flight and no
 *             commit runs
 *   READONLY  this host is not the owner: every request waits, and asks
 *             the cluster for ownership (want_owner_cb)
 *   FENCED    this host was fenced: every request fails at once (writes
 *             EACCES, reads EIO: another host may be writing now), and
 *             what was in flight fails as it completes.  Terminal: nothing
 *             (a failed handoff, a retry, a takeover) leaves it; only a
 *             restarted agent serves the volume again
 *   DEGRADED  writes fail at once with EIO
 *
 * Format, open, the standalone takeover and close use the backends'
 * blocking variants (timed into the volume's blocking_io statistic).  The
 * data path never blocks, nor do the cluster's handoff steps: the clean
 * mark (vol_mark_clean_async) and the takeover (vol_takeover_async) read
 * and write through the asynchronous path.
 *
 * The lease gate (cluster mode, vol_set_lease): a host may acknowledge
 * only while its quorum lease holds.  Past the deadline (cowd_now_ns, so a
 * host that was stopped and wakes up knows at once) new requests wait as if
 * held, no commit starts, and a completion that would acknowledge a write
 * or answer a read is parked instead.  The cluster layer then either
 * confirms that this host still owns the volume at the same epoch
 * (vol_confirm: the parked replies go out) or fences it (vol_fence: they
 * fail with EIO).  Errors are never held back: failing is always safe.
 * A drain or close past the lease or on a fenced volume writes nothing:
 * the volume is left dirty for its next owner, which is correct, and the
 * drain gives up at once instead of retrying a commit the device refuses.
 *
 * Completion is never delivered inside the call that submitted the
 * request: when a request fails at once, its ack is deferred to a loop
 * deferred call (defer.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cowlog.h"
#include <uuid/uuid.h>

#include "loop.h"
#include "volume-int.h"

const char *
vol_commit_name (enum dscow_commit c)
{
  switch (c)
    {
    case DSCOW_COMMIT_SYNC:
      return "sync";
    case DSCOW_COMMIT_FLUSH:
      return "flush";
    case DSCOW_COMMIT_NONE:
      return "none";
    }
  return "unknown";
}

int
vol_commit_parse (const char *s, enum dscow_commit *c)
{
  if (strcmp (s, "sync") == 0)
    *c = DSCOW_COMMIT_SYNC;
  else if (strcmp (s, "flush") == 0)
    *c = DSCOW_COMMIT_FLUSH;
  else if (strcmp (s, "none") == 0)
    *c = DSCOW_COMMIT_NONE;
  else
    return -1;
  return 0;
}

const char *
vol_state_name (enum vol_state s)
{
  static const char *names[]
      = { "active", "held", "readonly", "fenced", "degraded" };
  return s <= VOL_STATE_DEGRADED ? names[s] : "unknown";
}

int
vol_check_serving (const struct volume *v, const char *what, char *err,
                   size_t errlen)
{
  if (v->state != VOL_STATE_ACTIVE)
    snprintf (err, errlen,
              "volume %s is %s on this node; run %s on its "
              "owner",
              v->name, vol_state_name (v->state), what);
  else if (v->held)
    snprintf (err, errlen,
              "volume %s is held (handoff or quorum loss); "
              "try again",
              v->name);
  else
    return 0;
  return -1;
}

void *
vol_alloc_aligned (size_t len)
{
  void *p;
  if (posix_memalign (&p, VOL_ALIGN, len ? len : VOL_ALIGN) != 0)
    return NULL;
  memset (p, 0, len);
  return p;
}

int
vol_err_cow_taken (char *err, size_t errlen, const char *name, const char *cow,
                   const char *user)
{
  snprintf (err, errlen,
            "volume %s: CoW device %s is the CoW device of "
            "volume %s already; a CoW device belongs to one volume",
            name, cow, user);
  return -COW_E_COW_IN_USE;
}

static int
vol_open_backends (const struct vol_params *p, const struct backend_opts *bo,
                   struct backend **base, struct backend **cow, char *err,
                   size_t errlen)
{
  char e[COW_ERRLEN - 128];
  struct backend_opts o = *bo;
  o.writable = false;
  o.direct = !p->buffered; /* block devices are O_DIRECT regardless */
  int r = p->base_uri ? backend_open (p->base_uri, &o, base, e, sizeof e)
                      : (*base = NULL,
                         0); /* hydrated: no base (vol_load_meta checks) */
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: base %s", p->name, e);
      return r;
    }
  o.writable = true;
  /* A format that flushes nothing (create --from: its caller makes the
   * file durable) writes a regular file through the page cache: the
   * caller's one syncfs writes many back together, where O_DIRECT made
   * each write wait for the disk in turn. */
  if (p->no_flush)
    o.direct = false;
  r = backend_open (p->cow_uri, &o, cow, e, sizeof e);
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: CoW device %s", p->name, e);
      backend_close (*base);
      return r == -EBUSY ? -COW_E_COW_IN_USE : r; /* locked by another */
    }
  const char *user = p->cow_user ? p->cow_user (p->cow_user_ud, *cow) : NULL;
  if (user)
    {
      r = vol_err_cow_taken (err, errlen, p->name, (*cow)->uri, user);
      goto out_close;
    }
  if ((*base && (*base)->align > VOL_ALIGN) || (*cow)->align > VOL_ALIGN)
    {
      snprintf (err, errlen,
                "volume %s: devices with blocks larger than "
                "%u bytes are not supported",
                p->name, VOL_ALIGN);
      r = -COW_E_BAD_DEVICE;
      goto out_close;
    }
  return 0;

out_close:
  backend_close (*base);
  backend_close (*cow);
  return r;
}

/* The named error for a libdscow error (positive DSCOW_E*). */
static int
vol_dscow_code (int code)
{
  switch (code)
    {
    case DSCOW_ETOOSMALL:
      return COW_E_COW_TOO_SMALL;
    case DSCOW_EBASEMISMATCH:
      return COW_E_BASE_MISMATCH;
    case DSCOW_EFORMATTED:
      return COW_E_COW_IN_USE;
    case DSCOW_ENAME:
    case DSCOW_ECHUNK:
      return COW_E_USAGE;
    default:
      return COW_E_BAD_SUPERBLOCK;
    }
}

/* Report a libdscow error on dev; returns its negative named code. */
int
vol_err (char *err, size_t errlen, const char *name, const char *dev, int code)
{
  snprintf (err, errlen, "volume %s: %s: %s", name, dev, dscow_strerror (code));
  return -vol_dscow_code (code);
}

/* The superblock encoded for its next slot (generation % 2): a buffer to
 * free, its offset in *off. */
static uint8_t *
vol_super_next (struct volume *v, uint64_t *off)
{
  uint8_t *buf = vol_alloc_aligned (DSCOW_SUPER_SIZE);
  if (!buf)
    return NULL;
  /* Consecutive superblock writes must alternate slots, so that a torn
   * write always leaves the previous superblock whole. */
  if (dscow_super_slot (v->generation) == dscow_super_slot (v->sb.generation))
    v->generation++;
  v->sb.generation = v->generation;
  dscow_super_encode (&v->sb, buf, DSCOW_SUPER_SIZE);
  *off = (uint64_t) dscow_super_slot (v->sb.generation) * DSCOW_SUPER_SIZE;
  return buf;
}

/* Write the superblock into its slot with FUA: durable when this returns.
 * flush_first flushes the CoW device before (the data written until now). */
int
vol_write_super (struct volume *v, bool flush_first)
{
  if (v->commit == DSCOW_COMMIT_NONE)
    return 0;
  uint64_t off;
  uint8_t *buf = vol_super_next (v, &off);
  if (!buf)
    return -ENOMEM;
  int r = flush_first ? backend_flush_sync (v->cow) : 0;
  if (r == 0)
    r = backend_pwrite_sync (v->cow, buf, off, DSCOW_SUPER_SIZE, BK_FUA);
  free (buf);
  if (r < 0)
    qb_log (LOG_ERR, "volume: %s: writing the superblock failed: %s", v->name,
            strerror (-r));
  return r;
}

/* Is there a dscow volume on the CoW device already?  Its name goes to
 * name (empty when only the magic is left of it). */
static bool
vol_cow_formatted (struct backend *cow, char name[DSCOW_NAME_MAX + 1])
{
  uint8_t *buf = vol_alloc_aligned (2 * DSCOW_SUPER_SIZE);
  struct dscow_super sb;
  unsigned slot;
  bool found = false;
  name[0] = '\0';
  if (buf && backend_pread_sync (cow, buf, 0, 2 * DSCOW_SUPER_SIZE) == 0)
    {
      if (dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &sb, &slot) == 0)
        {
          found = true;
          memcpy (name, sb.name, DSCOW_NAME_MAX + 1);
        }
      else
        found = memcmp (buf, DSCOW_MAGIC, DSCOW_MAGIC_LEN) == 0;
    }
  free (buf);
  return found;
}

/* Zero the bitmap of sb's geometry on cow (not flushed). */
int
vol_zero_bitmap (struct backend *cow, const struct dscow_super *sb)
{
  uint64_t bm = dscow_bitmap_bytes (sb->volume_size, sb->chunk_size);
  /* Zeroes: no more than the bitmap needs (a small volume's bitmap is a
   * few KiB; allocating and clearing 1 MiB was most of a create's CPU). */
  size_t zlen = bm < 1024 * 1024 ? (size_t) bm : 1024 * 1024;
  uint8_t *zero
      = vol_alloc_aligned ((zlen + VOL_ALIGN - 1) & ~(size_t) (VOL_ALIGN - 1));
  int r = zero ? 0 : -ENOMEM;
  for (uint64_t off = 0; off < bm && r == 0; off += zlen)
    {
      size_t n = bm - off < zlen ? bm - off : zlen;
      r = backend_pwrite_sync (cow, zero, DSCOW_BITMAP_OFFSET + off, n, 0);
    }
  free (zero);
  return r;
}

/* Write the superblock (slot B) and zero the bitmap.  Without flushes,
 * both in one write when the bitmap follows the superblocks closely (any
 * volume up to 512 GiB at 64 KiB chunks); the order does not matter then,
 * since nothing names the volume before its caller has made the device
 * durable.  With flushes, the bitmap is durable before the superblock
 * that makes it count. */
static int
vol_format_write (struct backend *cow, const struct dscow_super *sb,
                  bool no_flush)
{
  uint64_t bm = dscow_bitmap_bytes (sb->volume_size, sb->chunk_size);
  size_t len = 2 * DSCOW_SUPER_SIZE;
  bool one = no_flush && DSCOW_BITMAP_OFFSET == len && bm <= 1024 * 1024;
  if (one)
    len = ((size_t) (DSCOW_BITMAP_OFFSET + bm) + VOL_ALIGN - 1)
          & ~(size_t) (VOL_ALIGN - 1);
  uint8_t *buf = vol_alloc_aligned (len);
  int r = -ENOMEM;
  if (!buf || (!one && (r = vol_zero_bitmap (cow, sb)) < 0))
    goto out;
  /* Generation 1 belongs in slot 1 (B); slot A stays zero, so the first
   * superblock rewrite (generation 2, slot A) never touches this one. */
  dscow_super_encode (sb, buf + DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE);
  if (no_flush)
    r = backend_pwrite_sync (cow, buf, 0, len, 0);
  else if ((r = backend_flush_sync (cow)) == 0)
    r = backend_pwrite_sync (cow, buf, 0, len, BK_FUA);
out:
  free (buf);
  return r;
}

int
vol_format (const struct vol_params *p, const struct backend_opts *bo,
            char *err, size_t errlen)
{
  struct backend *base, *cow;
  int ret = vol_open_backends (p, bo, &base, &cow, err, errlen);
  if (ret < 0)
    return ret;
  ret = -COW_E_BAD_DEVICE;
  uint8_t uuid[16];
  struct dscow_super sb;
  uuid_generate (uuid);
  if (base->size == 0)
    {
      snprintf (err, errlen, "volume %s: base %s is empty (0 bytes)", p->name,
                base->uri);
      goto out;
    }
  if (base->size % VOL_ALIGN)
    {
      snprintf (err, errlen,
                "volume %s: base %s: size %" PRIu64 " is not a "
                "multiple of 4096 bytes",
                p->name, base->uri, base->size);
      goto out;
    }
  int r = dscow_super_init (&sb, p->name, uuid, base->size,
                            p->chunk_size ? p->chunk_size : DSCOW_CHUNK_DEFAULT,
                            cow->size, base->size, base->ident,
                            p->commit ? p->commit : DSCOW_COMMIT_SYNC);
  if (r == -DSCOW_ETOOSMALL)
    {
      snprintf (err, errlen,
                "volume %s: CoW device %s is too small: it has "
                "%" PRIu64 " bytes and needs %" PRIu64 " (base %" PRIu64
                " + metadata)",
                p->name, cow->uri, cow->size,
                dscow_cow_min_size (base->size, sb.chunk_size
                                                    ? sb.chunk_size
                                                    : DSCOW_CHUNK_DEFAULT),
                base->size);
      ret = -COW_E_COW_TOO_SMALL;
      goto out;
    }
  if (r < 0)
    {
      ret = vol_err (err, errlen, p->name, cow->uri, -r);
      goto out;
    }
  backend_file_stamp (base, &sb.stamp);
  if (p->cow_ident_out)
    memcpy (p->cow_ident_out, cow->ident, sizeof cow->ident);
  char sb_name[DSCOW_NAME_MAX + 1];
  bool formatted = vol_cow_formatted (cow, sb_name);
  if (formatted && sb_name[0] && strcmp (sb_name, p->name) != 0 && p->defined
      && p->defined (p->cow_user_ud, sb_name))
    {
      ret = vol_err_cow_taken (err, errlen, p->name, cow->uri, sb_name);
      goto out;
    }
  if (!p->force && formatted)
    {
      snprintf (err, errlen,
                "volume %s: CoW device %s already holds a dscow "
                "volume; use --force to format it again",
                p->name, cow->uri);
      ret = -COW_E_COW_IN_USE;
      goto out;
    }
  if ((r = vol_format_write (cow, &sb, p->no_flush)) < 0)
    {
      snprintf (err, errlen, "volume %s: formatting CoW device %s failed: %s",
                p->name, cow->uri, strerror (-r));
      ret = r;
      goto out;
    }
  if (!p->quiet)
    qb_log (LOG_INFO, "volume: %s: formatted %s over base %s (%s), chunk %u",
            p->name, cow->uri, base->uri, base->ident, sb.chunk_size);
  ret = 0;
out:
  backend_close (base);
  backend_close (cow);
  return ret;
}

/* Read and pick the superblock of the CoW device into v->sb. */
static int
vol_read_super (struct volume *v, char *err, size_t errlen)
{
  if (v->cow->size < 2 * DSCOW_SUPER_SIZE)
    {
      snprintf (err, errlen,
                "volume %s: CoW device %s holds no dscow volume:"
                " it has %" PRIu64 " bytes, less than the %u of the "
                "superblocks",
                v->name, v->cow->uri, v->cow->size, 2 * DSCOW_SUPER_SIZE);
      return -COW_E_BAD_SUPERBLOCK;
    }
  uint8_t *buf = vol_alloc_aligned (2 * DSCOW_SUPER_SIZE);
  unsigned slot;
  int r = buf ? backend_pread_sync (v->cow, buf, 0, 2 * DSCOW_SUPER_SIZE)
              : -ENOMEM;
  if (r == 0)
    {
      r = dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &v->sb, &slot);
      if (r < 0)
        r = vol_err (err, errlen, v->name, v->cow->uri, -r);
    }
  else
    snprintf (err, errlen,
              "volume %s: reading the superblock of %s failed: "
              "%s",
              v->name, v->cow->uri, strerror (-r));
  free (buf);
  return r < 0 ? r : 0;
}

/* The CoW device found at open is smaller than its superblock needs. */
static int
vol_err_small (const struct volume *v, char *err, size_t errlen)
{
  snprintf (err, errlen,
            "volume %s: CoW device %s is too small: it has %" PRIu64
            " bytes and needs %" PRIu64 " (base %" PRIu64 " + metadata)",
            v->name, v->cow->uri, v->cow->size,
            dscow_cow_min_size (v->sb.volume_size, v->sb.chunk_size),
            v->sb.volume_size);
  return -COW_E_COW_TOO_SMALL;
}

/* Is the base the one recorded in v->sb (size, identity, file stamp)?
 * A change is refused, or with accept_base recorded in v->sb (written
 * with the next superblock); a change of size never is.  A superblock
 * without a stamp (minor version 0) gets one: it is recorded as found. */
static int
vol_check_base (struct volume *v, char *err, size_t errlen)
{
  struct backend *b = v->base;
  struct dscow_super *sb = &v->sb;
  struct dscow_base_stamp now;
  char what[512];
  bool moved;
  if (b->size != sb->base_size || sb->volume_size != b->size)
    {
      snprintf (err, errlen,
                "volume %s: base %s has %" PRIu64 " bytes but "
                "the volume was created on %" PRIu64 "; refusing to serve it",
                v->name, b->uri, b->size, sb->base_size);
      return -COW_E_BASE_MISMATCH;
    }
  backend_file_stamp (b, &now);
  dscow_base_changed (sb, &now, b->ident, what, sizeof what, &moved);
  if (what[0] && !v->accept_base)
    {
      snprintf (err, errlen,
                "volume %s: base %s changed since the volume "
                "was created, or is another file (%s); refusing to serve it; "
                "cowctl attach %s --accept-base-change records it as it is "
                "now",
                v->name, b->uri, what, v->name);
      return -COW_E_BASE_MISMATCH;
    }
  if (what[0])
    qb_log (LOG_WARNING,
            "volume: %s: base %s changed (%s); recorded as it "
            "is now, as the operator asked",
            v->name, b->uri, what);
  else if (moved)
    qb_log (LOG_NOTICE,
            "volume: %s: base %s: its file system's device "
            "number changed (inode and times agree); recorded",
            v->name, b->uri);
  else if (sb->stamp.kind == DSCOW_STAMP_NONE && now.kind)
    qb_log (LOG_INFO,
            "volume: %s: recording the stamp of base %s (none "
            "was recorded)",
            v->name, b->uri);
  sb->stamp = now;
  memcpy (sb->base_id, b->ident, sizeof sb->base_id - 1);
  sb->base_id[sizeof sb->base_id - 1] = '\0';
  if (now.kind && sb->version_minor < 1)
    sb->version_minor = 1;
  return 0;
}

/* Superblock and bitmap are adjacent at the start of the CoW device: one
 * read of vol_meta_len bytes fetches both (a takeover waits for it). */
static size_t
vol_meta_len (const struct volume *v)
{
  bool meta = v->commit != DSCOW_COMMIT_NONE;
  uint64_t bm = dscow_bitmap_bytes (v->sb.volume_size, v->sb.chunk_size);
  return DSCOW_BITMAP_OFFSET + (meta ? bm : 0);
}

/* Check what that read brought against v's geometry (v->sb, the maps are
 * known) and take superblock and bitmap into v.  buf stays the caller's. */
static int
vol_meta_apply (struct volume *v, const uint8_t *buf, char *err, size_t errlen)
{
  bool meta = v->commit != DSCOW_COMMIT_NONE;
  uint64_t bm = dscow_bitmap_bytes (v->sb.volume_size, v->sb.chunk_size);
  struct dscow_super sb;
  unsigned slot;
  int r;
  if ((r = dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &sb, &slot)) < 0)
    return vol_err (err, errlen, v->name, v->cow->uri, -r);
  if (sb.volume_size != v->sb.volume_size || sb.chunk_size != v->sb.chunk_size)
    {
      snprintf (err, errlen,
                "volume %s: the size or chunk size on %s "
                "changed while the volume was open",
                v->name, v->cow->uri);
      return -COW_E_BAD_SUPERBLOCK;
    }
  v->sb = sb;
  if (!v->base && !(v->sb.flags & DSCOW_FLAG_HYDRATED))
    {
      snprintf (err, errlen,
                "volume %s: opened without a base, but %s is "
                "not hydrated",
                v->name, v->cow->uri);
      return -COW_E_BASE_MISMATCH;
    }
  if (v->cow->size < dscow_cow_min_size (sb.volume_size, sb.chunk_size))
    return vol_err_small (v, err, errlen);
  if (v->base && (r = vol_check_base (v, err, errlen)) < 0)
    return r;
  if (v->sb.ro_compat & DSCOW_RO_COMPAT_FROZEN)
    {
      snprintf (err, errlen,
                "volume %s: CoW device %s is frozen as snapshot "
                "%s under %s; this agent's view of the layer chain is stale: "
                "attach the volume again",
                v->name, v->cow->uri, v->sb.snap_name, v->sb.upper_uri);
      return -COW_E_BAD_SUPERBLOCK;
    }
  if (v->sb.ro_compat & ~DSCOW_RO_COMPAT_SUPPORTED)
    {
      snprintf (err, errlen,
                "volume %s: %s uses a feature this agent can "
                "only read; refusing to write it",
                v->name, v->cow->uri);
      return -COW_E_BAD_SUPERBLOCK;
    }
  if (meta && !(v->sb.flags & DSCOW_FLAG_RESETTING))
    memcpy (v->map, buf + DSCOW_BITMAP_OFFSET, bm);
  else
    memset (v->map, 0, bm); /* transient: reset on open; or a reset
                             * committed (chain_reset_finish) */
  memcpy (v->dmap, v->map, bm);
  v->cow_chunks = dscow_bitmap_count (v->map, v->nchunks);
  v->generation = v->sb.generation;
  return 0;
}

static int vol_load_meta (struct volume *v, char *err, size_t errlen);

/* vol_meta_apply for a takeover: a top that another host froze meanwhile
 * (a snapshot while this host did not own the volume) means the chain on
 * disk is not the one open here: walk it again, then read the new top. */
static int
vol_meta_take (struct volume *v, const uint8_t *buf, char *err, size_t errlen)
{
  struct dscow_super sb;
  unsigned slot;
  if (v->chain_check
      && dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &sb, &slot) == 0
      && (sb.ro_compat & DSCOW_RO_COMPAT_FROZEN))
    {
      int r = chain_refresh (v, err, errlen);
      return r < 0 ? r : vol_load_meta (v, err, errlen);
    }
  return vol_meta_apply (v, buf, err, errlen);
}

/* Before a takeover: a volume with snapshots that another host may have
 * owned walks its chain again (the top is read next). */
static int
vol_chain_check (struct volume *v, char *err, size_t errlen)
{
  return v->chain_check && v->nlower ? chain_refresh (v, err, errlen) : 0;
}

/* Read superblock and bitmap from the CoW device into v, blocking (open,
 * and the standalone attach). */
static int
vol_load_meta (struct volume *v, char *err, size_t errlen)
{
  size_t len = vol_meta_len (v);
  if (v->cow->size < len)
    return vol_err_small (v, err, errlen);
  uint8_t *buf = vol_alloc_aligned (len);
  int r = buf ? backend_pread_sync (v->cow, buf, 0, len) : -ENOMEM;
  if (r < 0)
    snprintf (err, errlen,
              "volume %s: reading the metadata of %s failed: "
              "%s",
              v->name, v->cow->uri, strerror (-r));
  else
    r = vol_meta_take (v, buf, err, errlen);
  free (buf);
  return r;
}

static int
vol_alloc_maps (struct volume *v)
{
  uint64_t bm = dscow_bitmap_bytes (v->sb.volume_size, v->sb.chunk_size);
  v->nblocks = bm / DSCOW_BITMAP_BLOCK;
  v->map = vol_alloc_aligned (bm);
  v->dmap = vol_alloc_aligned (bm);
  v->dirty = calloc (v->nblocks, sizeof *v->dirty);
  for (int i = 0; i < 2; i++)
    {
      v->staged[i] = vol_alloc_aligned (bm);
      v->commit_blocks[i] = calloc (v->nblocks, sizeof (uint64_t));
      if (!v->staged[i] || !v->commit_blocks[i])
        return -ENOMEM;
    }
  return v->map && v->dmap && v->dirty ? 0 : -ENOMEM;
}

static void
vol_free (struct volume *v)
{
  if (!v)
    return;
  hydrate_stop (v);
  merge_stop (v);
  export_free (v);
  chain_free (v);
  /* Requests still waiting (for ownership) end here. */
  while (v->held_head)
    {
      struct vreq *rq = v->held_head;
      v->held_head = rq->next;
      free (rq->alloc);
      rq->done (rq->opaque, -ESHUTDOWN);
      free (rq);
    }
  backend_close (v->base);
  backend_close (v->cow);
  free (v->map);
  free (v->dmap);
  for (int i = 0; i < 2; i++)
    {
      free (v->staged[i]);
      free (v->commit_blocks[i]);
    }
  free (v->dirty);
  free (v->name);
  free (v);
}

int
vol_open (const struct vol_params *p, const struct backend_opts *bo,
          struct volume **out, char *err, size_t errlen)
{
  struct volume *v = calloc (1, sizeof *v);
  if (!v)
    {
      snprintf (err, errlen, "volume %s: out of memory", p->name);
      return -COW_E_INTERNAL;
    }
  v->name = strdup (p->name);
  int r = vol_open_backends (p, bo, &v->base, &v->cow, err, errlen);
  if (r < 0)
    {
      free (v->name);
      free (v);
      return r;
    }
  if ((r = vol_read_super (v, err, errlen)) < 0) /* geometry first */
    goto out_free;
  if (strcmp (v->sb.name, p->name) != 0)
    {
      snprintf (err, errlen,
                "volume %s: CoW device %s was formatted for "
                "volume %s; refusing to attach it (it may hold %s's data)",
                p->name, v->cow->uri, v->sb.name, v->sb.name);
      r = -COW_E_COW_IN_USE;
      goto out_free;
    }
  v->direct = !p->buffered;
  v->bo = *bo;
  if ((r = chain_open (v, p, bo, err, errlen)) < 0) /* finds the top */
    goto out_free;
  v->accept_base = p->accept_base_change;
  v->resume_merge = p->resume_merge;
  v->commit = p->commit ? p->commit : (enum dscow_commit) v->sb.commit;
  v->cs = v->sb.chunk_size;
  v->nchunks = dscow_nr_chunks (v->sb.volume_size, v->cs);
  v->cow_base = (uint64_t) v->sb.meta_chunks * v->cs;
  if ((r = vol_alloc_maps (v)) < 0)
    {
      snprintf (err, errlen, "volume %s: out of memory for the bitmap",
                p->name);
      goto out_free;
    }
  if ((r = chain_load_maps (v, err, errlen)) < 0
      || (r = vol_load_meta (v, err, errlen)) < 0)
    goto out_free;
  if (v->sb.state == DSCOW_STATE_DIRTY && v->commit != DSCOW_COMMIT_NONE)
    qb_log (LOG_NOTICE,
            "volume: %s: was not closed cleanly; the bitmap is "
            "consistent as of its last commit",
            v->name);
  *out = v;
  return 0;

out_free:
  vol_free (v);
  return r;
}

int
vol_start_loop (struct volume *v, const struct backend_opts *bo, char *err,
                size_t errlen)
{
  v->bo = *bo;
  v->bo.blocking_only = v->bo.loop_later = false;
  char e[COW_ERRLEN - 128];
  int r = backend_start_loop (v->base, e, sizeof e);
  if (r == 0)
    r = backend_start_loop (v->cow, e, sizeof e);
  for (unsigned i = 0; r == 0 && i < v->nlower; i++)
    r = backend_start_loop (v->lower[i].bk, e, sizeof e);
  if (r < 0)
    snprintf (err, errlen, "volume %s: %s", v->name, e);
  return r;
}

/* Taking the volume for writing, once superblock and bitmap were read
 * again: check the generation the handoff named (0: don't), and make the
 * superblock to write say dirty, with our epoch and node. */
static int
vol_takeover_prepare (struct volume *v, uint64_t epoch, uint32_t owner,
                      uint64_t expect_generation, char *err, size_t errlen)
{
  if (v->state == VOL_STATE_FENCED)
    {
      snprintf (err, errlen,
                "volume %s: this host was fenced; it serves "
                "the volume again only after cowd is restarted",
                v->name);
      return -1;
    }
  if (expect_generation && v->sb.generation != expect_generation)
    {
      snprintf (err, errlen,
                "volume %s: bitmap generation on disk is %" PRIu64
                " but the handoff said %" PRIu64,
                v->name, v->sb.generation, expect_generation);
      return -COW_E_HANDOFF_FAILED;
    }
  v->sb.epoch = epoch;
  v->sb.owner_node = owner;
  v->sb.state = DSCOW_STATE_DIRTY;
  v->generation++;
  return 0;
}

/* Taken: the volume serves writes, and what was under way goes on. */
void
vol_takeover_done (struct volume *v)
{
  v->accept_base = false; /* the change is on disk now */
  v->chain_check = false; /* ours now: only we change the chain */
  v->state = VOL_STATE_ACTIVE;
  v->st.takeovers++;
  hydrate_kick (v); /* a hydration asked for goes on here */
  merge_resume (v); /* and an interrupted merge */
}

int
vol_takeover (struct volume *v, uint64_t epoch, uint32_t owner,
              uint64_t expect_generation, char *err, size_t errlen)
{
  int r = vol_takeover_io (v, epoch, owner, expect_generation, err, errlen);
  if (r == 0)
    vol_takeover_done (v);
  return r;
}

/* Take the volume for writing, blocking: mark it dirty with our epoch. */
int
vol_takeover_io (struct volume *v, uint64_t epoch, uint32_t owner,
                 uint64_t expect_generation, char *err, size_t errlen)
{
  int r = vol_chain_check (v, err, errlen);
  if (r == 0)
    r = vol_load_meta (v, err, errlen);
  if (r < 0 || (r = chain_reset_finish (v, err, errlen)) < 0
      || (r = vol_takeover_prepare (v, epoch, owner, expect_generation, err,
                                    errlen))
             < 0)
    return r;
  r = vol_write_super (v, false); /* nothing of ours to flush yet */
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: writing the superblock failed: %s",
                v->name, strerror (-r));
      return r;
    }
  return 0;
}

/* The same without blocking the loop, for the cluster's takeover: read
 * superblock and bitmap (one read; 2 MiB of bitmap per TiB at 64 KiB
 * chunks), then write the dirty superblock with FUA, each on the CoW
 * backend's asynchronous path.  Other volumes, the lease heartbeat and the
 * control channel run meanwhile; this volume stays as it was (requests
 * wait) until done reports. */
struct takeover_ctx
{
  struct volume *v;
  uint8_t *buf;
  uint64_t epoch, expect_generation;
  uint32_t owner;
  vol_takeover_fn *done;
  void *opaque;
  char err[COW_ERRLEN];
};

static void
takeover_end (struct takeover_ctx *c, int res)
{
  struct volume *v = c->v;
  if (res == 0)
    vol_takeover_done (v);
  else if (!c->err[0])
    snprintf (c->err, sizeof c->err, "volume %s: %s failed: %s", v->name,
              c->buf ? "writing the superblock" : "reading the metadata",
              strerror (-res));
  c->done (c->opaque, res, res == 0 ? NULL : c->err);
  free (c->buf);
  free (c);
  v->in_flight--;
  vol_check_drained (v); /* a close may wait for this */
}

static void
takeover_written (void *opaque, int res)
{
  takeover_end (opaque, res);
}

static void
takeover_read (void *opaque, int res)
{
  struct takeover_ctx *c = opaque;
  struct volume *v = c->v;
  uint64_t off;
  if (res < 0)
    {
      snprintf (c->err, sizeof c->err,
                "volume %s: reading the metadata of "
                "%s failed: %s",
                v->name, v->cow->uri, strerror (-res));
      return takeover_end (c, res);
    }
  int r;
  if ((r = vol_meta_take (v, c->buf, c->err, sizeof c->err)) < 0
      || (r = chain_reset_finish (v, c->err, sizeof c->err)) < 0
      || (r = vol_takeover_prepare (v, c->epoch, c->owner, c->expect_generation,
                                    c->err, sizeof c->err))
             < 0)
    return takeover_end (c, r); /* a named code; c->err says it */
  free (c->buf);
  if (v->commit == DSCOW_COMMIT_NONE)
    {
      c->buf = NULL;
      return takeover_end (c, 0);
    }
  if (!(c->buf = vol_super_next (v, &off)))
    {
      snprintf (c->err, sizeof c->err,
                "volume %s: out of memory for the "
                "superblock",
                v->name);
      return takeover_end (c, -ENOMEM);
    }
  r = v->cow->ops->write (v->cow, c->buf, off, DSCOW_SUPER_SIZE, BK_FUA,
                          takeover_written, c);
  if (r < 0)
    takeover_end (c, r);
}

void
vol_takeover_async (struct volume *v, uint64_t epoch, uint32_t owner,
                    uint64_t expect_generation, vol_takeover_fn *done,
                    void *opaque)
{
  struct takeover_ctx *c = calloc (1, sizeof *c);
  size_t len = vol_meta_len (v);
  if (c)
    c->buf = vol_alloc_aligned (len);
  if (!c || !c->buf)
    {
      free (c);
      char err[256];
      snprintf (err, sizeof err, "volume %s: out of memory for the takeover",
                v->name);
      done (opaque, -ENOMEM, err);
      return;
    }
  *c = (struct takeover_ctx){ .v = v,
                              .buf = c->buf,
                              .epoch = epoch,
                              .expect_generation = expect_generation,
                              .owner = owner,
                              .done = done,
                              .opaque = opaque };
  v->in_flight++;
  /* A chain another host may have changed: walked again first (blocking,
   * only for a volume with snapshots). */
  int r = vol_chain_check (v, c->err, sizeof c->err);
  if (r < 0)
    return takeover_end (c, r);
  r = v->cow->ops->read (v->cow, c->buf, 0, len, takeover_read, c);
  if (r < 0)
    takeover_read (c, r);
}

/* The handoff point: the superblock to write says clean, one generation
 * on. */
static void
vol_set_clean (struct volume *v)
{
  v->sb.state = DSCOW_STATE_CLEAN;
  v->generation++;
}

int
vol_mark_clean (struct volume *v)
{
  if (!vol_lease_ok (v))
    return -EACCES; /* fenced or past the lease: write nothing */
  vol_set_clean (v);
  return vol_write_super (v, true);
}

int
vol_release (struct volume *v)
{
  int r = vol_mark_clean (v);
  vol_set_state (v, VOL_STATE_READONLY);
  v->released_clean = r == 0;
  return r;
}

struct clean_ctx
{
  struct volume *v;
  uint8_t *buf;
  int pending, err;
  vol_done_fn *done;
  void *opaque;
};

static void
vol_clean_done (void *opaque, int res)
{
  struct clean_ctx *c = opaque;
  struct volume *v = c->v;
  if (res < 0 && c->err == 0)
    c->err = res;
  if (--c->pending > 0)
    return;
  if (c->err)
    qb_log (LOG_ERR, "volume: %s: marking the superblock clean failed: %s",
            v->name, strerror (-c->err));
  free (c->buf);
  c->done (c->opaque, c->err);
  free (c);
  v->in_flight--;
  vol_check_drained (v); /* a close may wait for this */
}

/* vol_mark_clean without blocking the loop, for a drained volume: every
 * bit is durable already, so the clean superblock (FUA) and the flush of
 * the data written before it go out together. */
static void
vol_mark_clean_start (struct volume *v, bool handoff, vol_done_fn *done,
                      void *opaque)
{
  if (!vol_lease_ok (v))
    {
      done (opaque, -EACCES); /* fenced or past the lease: write nothing */
      return;
    }
  if (v->commit == DSCOW_COMMIT_NONE)
    {
      done (opaque, 0);
      return;
    }
  struct clean_ctx *c = calloc (1, sizeof *c);
  uint64_t off;
  if (!c)
    {
      done (opaque, -ENOMEM);
      return;
    }
  vol_set_clean (v);
  if (handoff)
    v->st.handoffs++;
  *c = (struct clean_ctx){ .v = v,
                           .buf = vol_super_next (v, &off),
                           .pending = 1,
                           .done = done,
                           .opaque = opaque };
  v->in_flight++;
  if (!c->buf)
    c->err = -ENOMEM;
  else
    {
      c->pending += 2;
      int r = v->cow->ops->flush (v->cow, vol_clean_done, c);
      if (r < 0)
        vol_clean_done (c, r);
      r = v->cow->ops->write (v->cow, c->buf, off, DSCOW_SUPER_SIZE, BK_FUA,
                              vol_clean_done, c);
      if (r < 0)
        vol_clean_done (c, r);
    }
  vol_clean_done (c, 0);
}

void
vol_mark_clean_async (struct volume *v, vol_done_fn *done, void *opaque)
{
  vol_mark_clean_start (v, true, done, opaque);
}

void
vol_set_state (struct volume *v, enum vol_state s)
{
  if (v->state == VOL_STATE_FENCED)
    return;
  v->state = s;
  if (s == VOL_STATE_ACTIVE)
    {
      hydrate_kick (v);
      merge_kick (v);
      export_kick (v);
    }
  else if (s == VOL_STATE_READONLY)
    {
      /* Another host may own it now: it may change the chain, and it
       * takes over a merge that runs (from the superblock's flag). */
      v->chain_check = true;
      if (!v->mrg.busy)
        merge_stop (v);
    }
}

static int vol_submit (struct volume *v, struct vreq *rq);

/* Submit again what waited on the hold list (it fails, waits again or
 * starts, as vol_submit decides). */
static void
vol_resubmit (struct volume *v)
{
  struct vreq *list = vreq_take (&v->held_head, &v->held_tail), *rq;
  while ((rq = vreq_pop (&list)))
    vol_submit (v, rq);
}

/* Completions parked past the lease: acknowledged (the lease holds again)
 * or failed with err. */
static void
vol_unpark (struct volume *v, int err)
{
  struct vreq *list = vreq_take (&v->parked_head, &v->parked_tail), *rq;
  while ((rq = vreq_pop (&list)))
    {
      if (err && rq->err == 0)
        rq->err = err;
      io_complete (rq);
    }
}

void
vol_park (struct vreq *rq)
{
  vreq_append (&rq->v->parked_head, &rq->v->parked_tail, rq);
}

/* Nothing this host still holds back will ever be acknowledged, nor
 * written: the writes the device holds back for the lease fail too. */
static void
vol_abandon (struct volume *v)
{
  vol_unpark (v, -EIO);
  commit_fail_waiting (v, -EIO);
  if (v->cow->ops->give_up)
    v->cow->ops->give_up (v->cow);
}

void
vol_drop_writes (struct volume *v)
{
  if (v->cow->ops->abort)
    v->cow->ops->abort (v->cow);
}

void
vol_fence (struct volume *v)
{
  v->state = VOL_STATE_FENCED;
  vol_drop_writes (v);
  vol_abandon (v);
  vol_resubmit (v); /* what waited fails now */
  vol_check_drained (v);
}

void
vol_set_lease (struct volume *v, uint64_t (*deadline) (void *ud), void *ud)
{
  v->lease_fn = deadline;
  v->lease_ud = ud;
}

bool
vol_lease_ok (const struct volume *v)
{
  if (v->state == VOL_STATE_FENCED)
    return false;
  return !v->lease_fn || cowd_now_ns () < v->lease_fn (v->lease_ud);
}

bool
vol_serving (const struct volume *v)
{
  return vol_lease_ok (v);
}

void
vol_confirm (struct volume *v)
{
  if (!vol_lease_ok (v))
    return;
  vol_unpark (v, 0);
  commit_kick (v);
  if (!v->held && v->state == VOL_STATE_ACTIVE)
    vol_resubmit (v);
  hydrate_kick (v);
  merge_kick (v);
  export_kick (v);
}

bool
vol_has_waiters (const struct volume *v)
{
  return v->held_head != NULL;
}

void
vol_set_want_owner_cb (struct volume *v,
                       void (*cb) (void *ud, struct volume *v), void *ud)
{
  v->want_owner_cb = cb;
  v->want_owner_ud = ud;
}

/* --- hold, drain, resume --- */

static void
vol_drain_flushed (void *opaque, int err)
{
  struct volume *v = opaque;
  if (err < 0 && v->drain_err == 0)
    v->drain_err = err; /* give up: no commit in a loop */
  vol_check_drained (v);
}

void
vol_check_drained (struct volume *v)
{
  if (!v->drained || v->in_flight || !commit_idle (v))
    return;
  /* Under `flush` bits may still be dirty: a drain makes them durable,
   * unless it may not write (fenced, past the lease) or its commit failed:
   * then the volume stays dirty for its next owner. */
  bool may_commit
      = v->commit != DSCOW_COMMIT_NONE && v->drain_err == 0 && vol_lease_ok (v);
  for (uint64_t b = 0; b < v->nblocks && may_commit; b++)
    if (v->dirty[b])
      {
        if (commit_internal (v, vol_drain_flushed, v) < 0)
          break;
        return;
      }
  /* From the loop (cowd_defer): whoever is completing the last request must be
   * able to finish touching v before `drained` may free it. */
  vol_done_fn *done = v->drained;
  v->drained = NULL;
  int res = v->drain_err ? v->drain_err : vol_lease_ok (v) ? 0 : -EACCES;
  if (vol_defer_done (done, v->drained_opaque, res) != 0)
    done (v->drained_opaque, res);
}

static void
vol_hold_common (struct volume *v, vol_done_fn *drained, void *opaque, bool op)
{
  v->held = true;
  v->drained = drained;
  v->drained_opaque = opaque;
  v->drained_op = op;
  vol_check_drained (v);
}

/* A hold (handoff, quorum loss, close) wins over an operation's: the
 * operation that still waits for its drain gets -ECANCELED, one that runs
 * leaves the volume held when it ends (vol_resume_op). */
void
vol_hold (struct volume *v, vol_done_fn *drained, void *opaque)
{
  if (v->op_active)
    v->op_superseded = true;
  export_abort (v);
  if (v->drained && v->drained_op
      && vol_defer_done (v->drained, v->drained_opaque, -ECANCELED) != 0)
    v->drained (v->drained_opaque, -ECANCELED);
  vol_hold_common (v, drained, opaque, false);
}

int
vol_hold_op (struct volume *v, vol_done_fn *drained, void *opaque)
{
  if (v->held || v->op_active)
    return -EBUSY;
  v->op_active = true;
  v->op_superseded = false;
  vol_hold_common (v, drained, opaque, true);
  return 0;
}

void
vol_resume_op (struct volume *v)
{
  v->op_active = false;
  if (!v->op_superseded)
    return vol_resume (v);
  v->op_superseded = false;
  vol_check_drained (v); /* the other hold stands */
}

static int vol_submit (struct volume *v, struct vreq *rq);

bool
vol_is_held (const struct volume *v)
{
  return v->held;
}

void
vol_resume (struct volume *v)
{
  v->held = false;
  v->drained = NULL;
  v->drain_err = 0;
  vol_resubmit (v);
  if (vol_lease_ok (v))
    {
      vol_unpark (v, 0);
      commit_kick (v);
    }
  hydrate_kick (v);
  merge_kick (v);
  export_kick (v);
}

struct close_ctx
{
  struct volume *v;
  vol_done_fn *done;
  void *opaque;
  bool owner; /* this host owned the volume when it was drained */
  int res;    /* the drain's */
};

/* The close's end, on the loop: say how the volume was left, free it. */
static void
vol_close_end (void *opaque, int r)
{
  struct close_ctx *cc = opaque;
  struct volume *v = cc->v;
  bool owner = cc->owner;
  int res = cc->res;
  if ((owner && res == 0 && r == 0) || (!owner && v->released_clean))
    qb_log (LOG_INFO, "volume: %s: closed clean at generation %" PRIu64,
            v->name, v->generation);
  else if (v->state == VOL_STATE_FENCED || (owner && res < 0))
    qb_log (LOG_WARNING,
            "volume: %s: closed without marking it clean (%s): "
            "its next owner takes it as the last commit left it",
            v->name,
            v->state == VOL_STATE_FENCED ? "this host was fenced"
            : res == -EACCES             ? "the lease ran out"
                                         : strerror (-res));
  else if (!owner)
    qb_log (LOG_INFO, "volume: %s: closed (not the owner here)", v->name);
  lograte_flush (&v->commit_lr);
  vol_free (v);
  if (cc->done)
    cc->done (cc->opaque, r);
  free (cc);
}

/* The clean mark is written (or failed): its completion still touches v,
 * so the end runs from the loop. */
static void
vol_close_marked (void *opaque, int r)
{
  if (vol_defer_done (vol_close_end, opaque, r) != 0)
    abort (); /* out of memory: v cannot be freed under its completion */
}

/* Drained: the owner marks the superblock clean without blocking the
 * loop (a flush and the superblock's FUA write, together: every bit is
 * durable once drained); a blocking mark here kept every other volume's
 * requests waiting for the device's flush (996.9 ms with fdatasync made
 * 1 s slower). */
static void
vol_close_drained (void *opaque, int res)
{
  struct close_ctx *cc = opaque;
  struct volume *v = cc->v;
  cc->owner = v->state == VOL_STATE_ACTIVE || v->state == VOL_STATE_HELD;
  cc->res = res;
  if (cc->owner && res == 0)
    return vol_mark_clean_start (v, false, vol_close_marked, cc);
  vol_close_end (cc, 0);
}

void
vol_close (struct volume *v, vol_done_fn *done, void *opaque)
{
  struct close_ctx *cc = malloc (sizeof *cc);
  if (!cc)
    abort ();
  *cc = (struct close_ctx){ .v = v, .done = done, .opaque = opaque };
  if (!vol_lease_ok (v))
    vol_abandon (v); /* nothing held back will be acknowledged */
  vol_hold (v, vol_close_drained, cc);
}

/* --- entry points --- */

struct deferred
{
  vol_done_fn *done;
  void *opaque;
  int err;
};

static void
vol_deferred_job (void *data)
{
  struct deferred *d = data;
  d->done (d->opaque, d->err);
  free (d);
}

/* Deliver a completion from the loop, never inside the submission (or
 * under the feet of whoever completes the last request of a drain). */
int
vol_defer_done (vol_done_fn *done, void *opaque, int err)
{
  struct deferred *d = malloc (sizeof *d);
  if (!d)
    return -ENOMEM;
  *d = (struct deferred){ done, opaque, err };
  if (cowd_defer (vol_deferred_job, d) != 0)
    {
      free (d);
      return err;
    }
  return 0;
}

static struct vreq *
vol_new_req (struct volume *v, enum vreq_type type, void *buf, uint64_t off,
             uint32_t len, unsigned flags, vol_done_fn *done, void *opaque)
{
  struct vreq *rq = calloc (1, sizeof *rq);
  if (!rq)
    return NULL;
  *rq = (struct vreq){ .v = v,
                       .type = type,
                       .buf = buf,
                       .off = off,
                       .len = len,
                       .flags = flags,
                       .done = done,
                       .opaque = opaque };
  if (len)
    {
      rq->c0 = off / v->cs;
      rq->c1 = (off + len - 1) / v->cs;
    }
  return rq;
}

/* Queue or start a request, honouring hold and state. */
static int
vol_submit (struct volume *v, struct vreq *rq)
{
  bool write = rq->type != VR_READ;
  if (v->state == VOL_STATE_FENCED || (write && v->state == VOL_STATE_DEGRADED))
    {
      int err = v->state == VOL_STATE_FENCED && write ? -EACCES : -EIO;
      free (rq->alloc);
      vol_done_fn *done = rq->done;
      void *opaque = rq->opaque;
      free (rq);
      v->st.errors++;
      return vol_defer_done (done, opaque, err);
    }
  /* Not the owner: even reads wait, since the owner may be changing the
   * bitmap under us; the first request asks for ownership.  Past the lease
   * nothing starts either: the cluster may have given the volume away. */
  bool must_wait
      = v->held || v->state == VOL_STATE_READONLY || !vol_lease_ok (v);
  if (must_wait)
    {
      vreq_append (&v->held_head, &v->held_tail, rq);
      if (v->state == VOL_STATE_READONLY && v->want_owner_cb)
        v->want_owner_cb (v->want_owner_ud, v);
      return 0;
    }
  v->in_flight++;
  v->st.in_flight = v->in_flight;
  v->client_ns = cowd_now_ns (); /* hydration yields to this */
  v->submitting++;
  if (rq->type == VR_FLUSH)
    {
      if (v->commit == DSCOW_COMMIT_FLUSH)
        commit_enqueue (v, rq);
      else
        commit_cow_flush (rq);
    }
  else if ((rq->type != VR_WRITE && rq->type != VR_TRIM)
           || !export_divert (v, rq))
    io_start (rq);
  v->submitting--;
  return 0;
}

static int
vol_check_range (struct volume *v, uint64_t off, uint32_t len)
{
  if (len == 0 || off > v->sb.volume_size || len > v->sb.volume_size - off)
    return -EINVAL;
  return 0;
}

int
vol_read (struct volume *v, void *buf, uint64_t off, uint32_t len,
          vol_done_fn *done, void *opaque)
{
  if (vol_check_range (v, off, len) < 0)
    return -EINVAL;
  v->st.reads++;
  v->st.bytes_read += len;
  uint64_t a0 = off & ~(uint64_t) (VOL_ALIGN - 1);
  uint64_t a1 = (off + len + VOL_ALIGN - 1) & ~(uint64_t) (VOL_ALIGN - 1);
  bool aligned = a0 == off && a1 == off + len
                 && ((uintptr_t) buf & (VOL_ALIGN - 1)) == 0;
  char *b = buf;
  if (!aligned && !(b = vol_alloc_aligned (a1 - a0)))
    return -ENOMEM;
  struct vreq *rq
      = vol_new_req (v, VR_READ, b, a0, (uint32_t) (a1 - a0), 0, done, opaque);
  if (!rq)
    {
      if (!aligned)
        free (b);
      return -ENOMEM;
    }
  if (!aligned)
    {
      rq->alloc = b;
      rq->ubuf = buf;
      rq->uoff = off;
      rq->ulen = len;
    }
  return vol_submit (v, rq);
}

/* WRITE_ZEROES writes from one shared buffer of zeroes, never written
 * and allocated once, in parts of at most VOL_ZERO_PART bytes (the buffer
 * holds a part at any alignment phase): a request of any length costs no
 * memory of its length.  (A read-only mapping of the zero page would not
 * do: pinning it for O_DIRECT makes the kernel copy it.)  NULL if it
 * cannot be allocated. */
#define VOL_ZERO_PART (4u << 20)
static const char *
vol_zeroes (void)
{
  static char *zeroes;
  if (!zeroes)
    zeroes = vol_alloc_aligned (VOL_ZERO_PART + VOL_ALIGN);
  return zeroes;
}

/* The engine writes aligned parts of a request straight from the
 * caller's buffer, so the buffer must have the same phase as the offset:
 * (buf - off) a multiple of VOL_ALIGN.  Otherwise (or for write zeroes)
 * it gets its own buffer with that phase. */
static int
vol_write_common (struct volume *v, const void *buf, uint64_t off, uint32_t len,
                  unsigned flags, vol_done_fn *done, void *opaque)
{
  char *b = (char *) buf, *alloc = NULL;
  size_t phase = off & (VOL_ALIGN - 1);
  if (!buf && len <= VOL_ZERO_PART && (b = (char *) vol_zeroes ()))
    b += phase; /* write zeroes: the shared buffer */
  else if (!buf || (((uintptr_t) buf - phase) & (VOL_ALIGN - 1)))
    {
      if (!(alloc = vol_alloc_aligned (len + phase)))
        return -ENOMEM;
      b = alloc + phase;
      if (buf)
        memcpy (b, buf, len);
    }
  struct vreq *rq = vol_new_req (v, VR_WRITE, b, off, len, flags, done, opaque);
  if (!rq)
    {
      free (alloc);
      return -ENOMEM;
    }
  rq->alloc = alloc;
  v->st.bytes_written += len;
  return vol_submit (v, rq);
}

int
vol_write (struct volume *v, const void *buf, uint64_t off, uint32_t len,
           unsigned flags, vol_done_fn *done, void *opaque)
{
  if (vol_check_range (v, off, len) < 0)
    return -EINVAL;
  v->st.writes++;
  return vol_write_common (v, buf, off, len, flags, done, opaque);
}

/* The parts of one WRITE_ZEROES: done once every part is. */
struct zero_parts
{
  vol_done_fn *done;
  void *opaque;
  unsigned left; /* parts in the engine, + 1 while submitting */
  int err;
};

static void
vol_zero_part_done (void *opaque, int err)
{
  struct zero_parts *zp = opaque;
  if (err && !zp->err)
    zp->err = err;
  if (--zp->left == 0)
    {
      zp->done (zp->opaque, zp->err);
      free (zp);
    }
}

int
vol_write_zeroes (struct volume *v, uint64_t off, uint32_t len, unsigned flags,
                  vol_done_fn *done, void *opaque)
{
  if (vol_check_range (v, off, len) < 0)
    return -EINVAL;
  v->st.zeroes++;
  if (len <= VOL_ZERO_PART)
    return vol_write_common (v, NULL, off, len, flags, done, opaque);
  struct zero_parts *zp = calloc (1, sizeof *zp);
  if (!zp)
    return -ENOMEM;
  *zp = (struct zero_parts){ .done = done, .opaque = opaque, .left = 1 };
  for (uint64_t pos = off, end = off + len; pos < end;)
    {
      /* Parts end on VOL_ZERO_PART boundaries of the volume. */
      uint64_t n = VOL_ZERO_PART - pos % VOL_ZERO_PART;
      if (n > end - pos)
        n = end - pos;
      int r = vol_write_common (v, NULL, pos, (uint32_t) n, flags,
                                vol_zero_part_done, zp);
      if (r < 0 && pos == off)
        {
          free (zp);
          return r; /* nothing started: the caller answers */
        }
      if (r < 0)
        {
          zp->err = r;
          break;
        }
      zp->left++;
      pos += n;
    }
  vol_zero_part_done (zp, 0);
  return 0;
}

int
vol_flush (struct volume *v, vol_done_fn *done, void *opaque)
{
  v->st.flushes++;
  struct vreq *rq = vol_new_req (v, VR_FLUSH, NULL, 0, 0, 0, done, opaque);
  if (!rq)
    return -ENOMEM;
  return vol_submit (v, rq);
}

int
vol_trim (struct volume *v, uint64_t off, uint32_t len, unsigned flags,
          vol_done_fn *done, void *opaque)
{
  if (vol_check_range (v, off, len) < 0)
    return -EINVAL;
  v->st.trims++;
  struct vreq *rq
      = vol_new_req (v, VR_TRIM, NULL, off, len, flags, done, opaque);
  if (!rq)
    return -ENOMEM;
  return vol_submit (v, rq);
}

size_t
vol_block_status (struct volume *v, enum vol_ctx ctx, uint64_t off,
                  uint64_t len, struct vol_extent *ext, size_t maxext)
{
  size_t n = 0;
  if (off >= v->sb.volume_size || maxext == 0)
    return 0;
  if (len > v->sb.volume_size - off)
    len = v->sb.volume_size - off;
  if (ctx == VOL_CTX_ALLOCATION)
    {
      ext[0] = (struct vol_extent){ .length = len, .flags = 0 };
      return 1;
    }
  uint64_t pos = off, end = off + len;
  while (pos < end && n < maxext)
    {
      uint64_t c = pos / v->cs;
      uint64_t run = dscow_bitmap_run (v->map, c, v->nchunks - c);
      uint64_t run_end = (c + run) * v->cs;
      if (run_end > end)
        run_end = end;
      ext[n++] = (struct vol_extent){ .length = run_end - pos,
                                      .flags
                                      = dscow_bit_test (v->map, c) ? 1u : 0u };
      pos = run_end;
    }
  return n;
}

/* --- introspection --- */

const char *
vol_name (const struct volume *v)
{
  return v->name;
}
uint64_t
vol_size (const struct volume *v)
{
  return v->sb.volume_size;
}
uint32_t
vol_chunk_size (const struct volume *v)
{
  return v->cs;
}

bool
vol_is_direct (const struct volume *v)
{
  return v->direct;
}
enum vol_state
vol_get_state (const struct volume *v)
{
  return v->state;
}
const struct dscow_super *
vol_super (const struct volume *v)
{
  return &v->sb;
}
uint64_t
vol_cow_chunks (const struct volume *v)
{
  return v->cow_chunks;
}
uint64_t
vol_generation (const struct volume *v)
{
  return v->generation;
}

struct backend *
vol_cow_backend (struct volume *v)
{
  return v->cow;
}

const char *
vol_health (const struct volume *v)
{
  enum backend_health b = v->base ? v->base->health : BK_HEALTHY;
  enum backend_health h = b > v->cow->health ? b : v->cow->health;
  static const char *names[]
      = { "healthy", "reconnecting", "degraded", "fenced" };
  return names[h];
}

bool
vol_degraded (const struct volume *v)
{
  return (v->base && v->base->health == BK_DEGRADED)
         || v->cow->health == BK_DEGRADED;
}

bool
vol_can_write (const struct volume *v)
{
  return v->state != VOL_STATE_FENCED && v->state != VOL_STATE_DEGRADED;
}

double
vol_stats_quantile (const struct vol_stats *st, double q)
{
  uint64_t n = 0, seen = 0;
  for (unsigned b = 0; b < VOL_HIST_BUCKETS; b++)
    n += st->commit_hist[b];
  for (unsigned b = 0; b < VOL_HIST_BUCKETS && n; b++)
    if ((seen += st->commit_hist[b]) >= q * (double) n)
      return (double) (1ull << b) / 1e6;
  return 0;
}

void
vol_get_stats (const struct volume *v, struct vol_stats *st)
{
  *st = v->st;
  st->in_flight = v->in_flight;
  st->blocking_io_ns = (v->base ? v->base->sync_ns : 0) + v->cow->sync_ns;
}
