/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-chain.c: layer chains: snapshots, rollback, reset.
 *
 * A volume is a chain  base <- L0 <- L1 <- ... <- top.  Every layer is a
 * dscow CoW device of the same geometry; chunk X lives at the same offset
 * in each.  A read of chunk X takes the top if its bit is set, else the
 * nearest frozen layer below that has it, else the base (vol_chunk_src);
 * a CoW fault copies from the same place.
 *
 * The chain is on disk, linked both ways (dscow(5), minor 3): a layer over
 * another has INCOMPAT_LOWER and names its lower's uuid and device; a
 * frozen layer has RO_COMPAT_FROZEN, its snapshot name and time, and
 * names its upper's uuid and device.  The volume's definition names L0
 * (the CoW device given at create), which never changes; open walks up
 * the FROZEN links to the first layer that is not frozen: the top.  So a
 * change of the chain is decided by one superblock write, which the two
 * slots make atomic:
 *
 *   snapshot   the new device is formatted (empty, linked to the top) and
 *              flushed; then the top's superblock gets FROZEN and the link
 *              up: the commit.  Before it, the new device is an unlinked
 *              leftover (a later snapshot may format it again).
 *   rollback   to snapshot S (layer k): layer R = k + 1 loses FROZEN and
 *   / reset    its link up and gets FLAG_RESETTING in one superblock write
 *              (reset: R is the top): the commit.  Its bitmap reads as
 *              zero from then on; it is zeroed on disk next and the flag
 *              cleared; an interruption in between is finished at the next
 *              takeover (chain_reset_finish).  The layers above R are
 *              unlinked: freed, reported to the operator.
 *
 * Each runs on a drained, held volume (the caller holds it) with the
 * backends' blocking calls, and leaves the in-memory chain as the disk
 * says.  COWD_TEST_CRASH_AT=STEP makes cowd exit at a named step, for the
 * tests that kill it at each one (vol_crash_point).
 *
 * Owned by the main thread, like the rest of the engine.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cowlog.h"
#include <uuid/uuid.h>

#include "volume-int.h"

void
vol_crash_point (const char *step)
{
  const char *at = getenv ("COWD_TEST_CRASH_AT");
  if (at && strcmp (at, step) == 0)
    {
      qb_log (LOG_CRIT, "volume: test hook: exiting at %s", step);
      _exit (99);
    }
}

/* --- superblocks of layers --- */

/* Read both slots of bk and pick one into sb: 0, -errno (the read), or
 * -1 with the libdscow code in *code. */
static int
chain_read_super (struct backend *bk, struct dscow_super *sb, int *code)
{
  uint8_t *buf = vol_alloc_aligned (2 * DSCOW_SUPER_SIZE);
  unsigned slot;
  int r = buf ? backend_pread_sync (bk, buf, 0, 2 * DSCOW_SUPER_SIZE) : -ENOMEM;
  *code = 0;
  if (r == 0
      && (*code = -dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, sb, &slot))
             != 0)
    r = -1;
  free (buf);
  return r;
}

/* Write sb, one generation on (the other slot), durable, after a flush of
 * what was written before it. */
int
chain_put_super (struct backend *bk, struct dscow_super *sb)
{
  uint8_t *buf = vol_alloc_aligned (DSCOW_SUPER_SIZE);
  if (!buf)
    return -ENOMEM;
  sb->generation++;
  dscow_super_encode (sb, buf, DSCOW_SUPER_SIZE);
  int r = backend_flush_sync (bk);
  if (r == 0)
    r = backend_pwrite_sync (bk, buf,
                             (uint64_t) dscow_super_slot (sb->generation)
                                 * DSCOW_SUPER_SIZE,
                             DSCOW_SUPER_SIZE, BK_FUA);
  free (buf);
  if (r < 0)
    qb_log (LOG_ERR, "volume: %s: writing the superblock of %s failed: %s",
            sb->name, bk->uri, strerror (-r));
  return r;
}

/* Write the superblock of layer i (the top when i == nlower). */
static int
chain_put (struct volume *v, unsigned i)
{
  if (i < v->nlower)
    return chain_put_super (v->lower[i].bk, &v->lower[i].sb);
  return vol_write_super (v, true);
}

static struct backend *
chain_bk (struct volume *v, unsigned i)
{
  return i < v->nlower ? v->lower[i].bk : v->cow;
}

static struct dscow_super *
chain_sb (struct volume *v, unsigned i)
{
  return i < v->nlower ? &v->lower[i].sb : &v->sb;
}

void
chain_unlink_up (struct dscow_super *sb)
{
  sb->ro_compat &= ~DSCOW_RO_COMPAT_FROZEN;
  memset (sb->upper_uuid, 0, sizeof sb->upper_uuid);
  memset (sb->upper_uri, 0, sizeof sb->upper_uri);
  memset (sb->snap_name, 0, sizeof sb->snap_name);
  sb->snap_time = 0;
}

/* --- open --- */

/* Is up (superblock usb on device uri) the layer cur names above it? */
static int
chain_check_link (struct volume *v, const struct dscow_super *cur,
                  const struct dscow_super *usb, const char *uri, char *err,
                  size_t errlen)
{
  const char *why = NULL;
  if (strcmp (usb->name, v->name) != 0)
    why = "it belongs to another volume";
  else if (memcmp (usb->uuid, cur->upper_uuid, 16) != 0)
    why = "its uuid is not the one the snapshot recorded";
  else if (!(usb->incompat & DSCOW_INCOMPAT_LOWER)
           || memcmp (usb->lower_uuid, cur->uuid, 16) != 0)
    why = "it does not name the snapshot as its lower layer";
  else if (usb->volume_size != cur->volume_size
           || usb->chunk_size != cur->chunk_size)
    why = "its size or chunk size differ";
  if (!why)
    return 0;
  snprintf (err, errlen,
            "volume %s: layer %s above snapshot %s is not the "
            "one recorded: %s",
            v->name, uri, cur->snap_name, why);
  return -COW_E_BAD_SUPERBLOCK;
}

/* Open the layer cur (v->sb, on v->cow) names above it and make it the
 * top; cur becomes the highest frozen layer. */
static int
chain_step_up (struct volume *v, const struct backend_opts *bo,
               const struct vol_params *p, char *err, size_t errlen)
{
  char e[COW_ERRLEN - 128];
  struct backend_opts o = *bo;
  struct backend *up;
  struct dscow_super usb;
  o.writable = true;
  o.direct = !p->buffered;
  if (v->nlower + 1 >= DSCOW_CHAIN_MAX)
    {
      snprintf (err, errlen,
                "volume %s: the layer chain is longer than %u "
                "layers",
                v->name, DSCOW_CHAIN_MAX);
      return -COW_E_BAD_SUPERBLOCK;
    }
  int r = backend_open (v->sb.upper_uri, &o, &up, e, sizeof e);
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: the layer above snapshot %s: %s",
                v->name, v->sb.snap_name, e);
      return r;
    }
  int code;
  if ((r = chain_read_super (up, &usb, &code)) == -1)
    r = vol_err (err, errlen, v->name, up->uri, code);
  else if (r < 0)
    snprintf (err, errlen,
              "volume %s: reading the superblock of %s "
              "failed: %s",
              v->name, up->uri, strerror (-r));
  else
    r = chain_check_link (v, &v->sb, &usb, up->uri, err, errlen);
  if (r < 0)
    {
      backend_close (up);
      return r;
    }
  v->lower[v->nlower++] = (struct vol_layer){ .bk = v->cow, .sb = v->sb };
  v->cow = up;
  v->sb = usb;
  return 0;
}

int
chain_open (struct volume *v, const struct vol_params *p,
            const struct backend_opts *bo, char *err, size_t errlen)
{
  if (v->sb.incompat & DSCOW_INCOMPAT_LOWER)
    {
      snprintf (err, errlen,
                "volume %s: CoW device %s is an upper layer of "
                "a chain (over %s), not the volume's first CoW device",
                v->name, v->cow->uri, v->sb.lower_uri);
      return -COW_E_BAD_SUPERBLOCK;
    }
  while (v->sb.ro_compat & DSCOW_RO_COMPAT_FROZEN)
    {
      int r = chain_step_up (v, bo, p, err, errlen);
      if (r < 0)
        return r;
    }
  if (v->nlower)
    qb_log (LOG_INFO, "volume: %s: %u snapshot layers, top %s", v->name,
            v->nlower, v->cow->uri);
  return 0;
}

/* The open backend of the layer on device uri, or NULL. */
static struct backend *
chain_open_bk (struct volume *v, const char *uri)
{
  for (unsigned i = 0; i < v->nlower; i++)
    if (strcmp (v->lower[i].bk->uri, uri) == 0)
      return v->lower[i].bk;
  return strcmp (v->cow->uri, uri) == 0 ? v->cow : NULL;
}

static bool
chain_in (const struct vol_layer *l, unsigned n, const struct backend *bk)
{
  for (unsigned i = 0; i < n; i++)
    if (l[i].bk == bk)
      return true;
  return false;
}

/* In a cluster another host may have owned the volume meanwhile and
 * changed its chain on disk (a snapshot, a rollback, a merge): before
 * this host takes it, walk the chain again from L0, as open does, keeping
 * the backends of layers still in it and opening the new ones with the
 * options of the open; close the layers no longer in it; read the frozen
 * layers' bitmaps again (a merge writes the lower one's).  The top's
 * superblock and bitmap are the caller's to read next.  Blocking; for a
 * volume with snapshots, or whose top turned out frozen. */
int
chain_refresh (struct volume *v, char *err, size_t errlen)
{
  struct vol_layer nl[DSCOW_CHAIN_MAX];
  struct backend *opened[DSCOW_CHAIN_MAX];
  unsigned nn = 0, nopened = 0;
  struct backend *bk = v->nlower ? v->lower[0].bk : v->cow;
  struct dscow_super sb;
  char e[COW_ERRLEN - 128];
  err[0] = '\0';
  int code, r = chain_read_super (bk, &sb, &code);
  while (r == 0 && (sb.ro_compat & DSCOW_RO_COMPAT_FROZEN))
    {
      struct backend *up = chain_open_bk (v, sb.upper_uri);
      struct backend_opts o = v->bo;
      struct dscow_super usb;
      if (nn + 1 >= DSCOW_CHAIN_MAX)
        {
          snprintf (err, errlen,
                    "volume %s: the layer chain is longer than %u layers",
                    v->name, DSCOW_CHAIN_MAX);
          r = -COW_E_BAD_SUPERBLOCK;
          break;
        }
      o.writable = true;
      o.direct = v->direct;
      if (!up && (r = backend_open (sb.upper_uri, &o, &up, e, sizeof e)) < 0)
        {
          snprintf (err, errlen, "volume %s: the layer above snapshot %s: %s",
                    v->name, sb.snap_name, e);
          break;
        }
      if (!chain_open_bk (v, up->uri))
        opened[nopened++] = up;
      nl[nn++] = (struct vol_layer){ .bk = bk, .sb = sb };
      if ((r = chain_read_super (up, &usb, &code)) == 0)
        r = chain_check_link (v, &sb, &usb, up->uri, err, errlen);
      bk = up;
      sb = usb;
    }
  if (r == -1)
    r = vol_err (err, errlen, v->name, bk->uri, code);
  else if (r < 0 && r != -COW_E_BAD_SUPERBLOCK && !err[0])
    snprintf (err, errlen, "volume %s: reading the superblock of %s failed: %s",
              v->name, bk->uri, strerror (-r));
  if (r < 0)
    {
      for (unsigned i = 0; i < nopened; i++)
        backend_close (opened[i]);
      return r;
    }
  bool changed = nn != v->nlower || bk != v->cow;
  for (unsigned i = 0; i < nn && !changed; i++)
    changed = nl[i].bk != v->lower[i].bk;
  /* The old view goes: maps always, backends not in the new chain. */
  for (unsigned i = 0; i < v->nlower; i++)
    {
      if (!chain_in (nl, nn, v->lower[i].bk) && v->lower[i].bk != bk)
        backend_close (v->lower[i].bk);
      free (v->lower[i].map);
    }
  if (!chain_in (nl, nn, v->cow) && v->cow != bk)
    backend_close (v->cow);
  memcpy (v->lower, nl, nn * sizeof *nl);
  v->nlower = nn;
  v->cow = bk;
  v->sb = sb;
  if (changed)
    qb_log (LOG_NOTICE,
            "volume: %s: the layer chain changed while another host owned "
            "the volume: %u snapshot layers now, top %s",
            v->name, nn, bk->uri);
  if ((r = chain_load_maps (v, err, errlen)) < 0)
    return r; /* walked again at the next takeover */
  v->chain_check = false;
  return 0;
}

int
chain_load_maps (struct volume *v, char *err, size_t errlen)
{
  uint64_t bm = dscow_bitmap_bytes (v->sb.volume_size, v->sb.chunk_size);
  for (unsigned i = 0; i < v->nlower; i++)
    {
      struct vol_layer *l = &v->lower[i];
      int r = (l->map = vol_alloc_aligned (bm)) ? 0 : -ENOMEM;
      if (r == 0)
        r = backend_pread_sync (l->bk, l->map, DSCOW_BITMAP_OFFSET, bm);
      if (r < 0)
        {
          snprintf (err, errlen,
                    "volume %s: reading the bitmap of layer %s "
                    "failed: %s",
                    v->name, l->bk->uri, strerror (-r));
          return r;
        }
      l->chunks = dscow_bitmap_count (l->map, v->nchunks);
    }
  return 0;
}

static void
chain_drop (struct vol_layer *l)
{
  backend_close (l->bk);
  free (l->map);
  *l = (struct vol_layer){ 0 };
}

void
chain_free (struct volume *v)
{
  for (unsigned i = 0; i < v->nlower; i++)
    chain_drop (&v->lower[i]);
  v->nlower = 0;
}

int
chain_reset_finish (struct volume *v, char *err, size_t errlen)
{
  if (!(v->sb.flags & DSCOW_FLAG_RESETTING) || v->commit == DSCOW_COMMIT_NONE)
    return 0;
  int r = vol_zero_bitmap (v->cow, &v->sb);
  if (r == 0)
    r = backend_flush_sync (v->cow);
  if (r < 0)
    {
      snprintf (err, errlen,
                "volume %s: zeroing the bitmap of %s for a "
                "reset failed: %s",
                v->name, v->cow->uri, strerror (-r));
      return r;
    }
  vol_crash_point ("reset-zeroed");
  v->sb.flags &= ~DSCOW_FLAG_RESETTING;
  v->sb.incompat &= ~DSCOW_INCOMPAT_RESETTING;
  qb_log (LOG_NOTICE, "volume: %s: the reset of %s is finished", v->name,
          v->cow->uri);
  return 0;
}

/* --- introspection --- */

unsigned
vol_layers (const struct volume *v, struct vol_layer_info *out, unsigned max)
{
  unsigned n = 0;
  for (unsigned i = 0; i <= v->nlower && n < max; i++, n++)
    {
      const struct dscow_super *sb = i < v->nlower ? &v->lower[i].sb : &v->sb;
      const struct backend *bk = i < v->nlower ? v->lower[i].bk : v->cow;
      out[n] = (struct vol_layer_info){
        .name = i < v->nlower ? sb->snap_name : NULL,
        .uri = bk->uri,
        .chunks = i < v->nlower ? v->lower[i].chunks : v->cow_chunks,
        .created = sb->create_time,
        .frozen = sb->snap_time
      };
    }
  return n;
}

/* The frozen layer whose snapshot is called name, or -1. */
static int
chain_find (const struct volume *v, const char *name)
{
  for (unsigned i = 0; i < v->nlower; i++)
    if (strcmp (v->lower[i].sb.snap_name, name) == 0)
      return (int) i;
  return -1;
}

/* --- snapshot --- */

/* Is the device key names one of the volume's devices already? */
bool
chain_uses (const struct volume *v, const char *key)
{
  if ((v->base && strcmp (v->base->key, key) == 0)
      || strcmp (v->cow->key, key) == 0)
    return true;
  for (unsigned i = 0; i < v->nlower; i++)
    if (strcmp (v->lower[i].bk->key, key) == 0)
      return true;
  return false;
}

static int
chain_err_used (const struct volume *v, const char *uri, char *err,
                size_t errlen)
{
  snprintf (err, errlen,
            "volume %s: %s is a device of the volume's chain "
            "already",
            v->name, uri);
  return -COW_E_COW_IN_USE;
}

/* May the new layer's device be formatted (volume name, of size bytes
 * in chunks of cs)?  Empty, or a layer of this volume that is no longer
 * in its chain (an interrupted snapshot, a rolled-back layer).  Reads no
 * volume: it runs on a thread (vol_layer_open). */
static int
chain_check_new (const char *name, uint64_t size, uint32_t cs,
                 struct backend *nb, char *err, size_t errlen)
{
  struct dscow_super sb;
  if (nb->size < dscow_cow_min_size (size, cs))
    {
      snprintf (err, errlen,
                "volume %s: %s is too small for a layer: it has "
                "%" PRIu64 " bytes and needs %" PRIu64,
                name, nb->uri, nb->size, dscow_cow_min_size (size, cs));
      return -COW_E_COW_TOO_SMALL;
    }
  uint8_t magic[4096] __attribute__ ((aligned (4096)));
  int r = backend_pread_sync (nb, magic, 0, sizeof magic);
  if (r < 0 || memcmp (magic, DSCOW_MAGIC, DSCOW_MAGIC_LEN) != 0)
    return 0; /* unreadable: the format's write says; no magic: free */
  int code;
  memset (&sb, 0, sizeof sb);
  if (chain_read_super (nb, &sb, &code) == 0 && strcmp (sb.name, name) == 0)
    return 0;
  snprintf (err, errlen,
            "volume %s: %s holds another dscow volume (%s); "
            "refusing to format it as a layer",
            name, nb->uri, sb.name[0] ? sb.name : "unreadable superblock");
  return -COW_E_COW_IN_USE;
}

int
vol_layer_open (const char *name, uint64_t size, uint32_t cs, bool direct,
                const char *uri, const struct backend_opts *bo,
                struct backend **nb, char *err, size_t errlen)
{
  char e[COW_ERRLEN - 128];
  struct backend_opts o = *bo;
  o.writable = true;
  o.direct = direct;
  *nb = NULL;
  vol_crash_point ("snapshot-start");
  int r = backend_open (uri, &o, nb, e, sizeof e);
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: new layer %s", name, e);
      return r == -EBUSY ? -COW_E_COW_IN_USE : r;
    }
  if ((r = chain_check_new (name, size, cs, *nb, err, errlen)) < 0)
    {
      backend_close (*nb);
      *nb = NULL;
    }
  return r;
}

/* Format nb as an empty layer over the top (durable). */
static int
chain_format_layer (struct volume *v, struct backend *nb,
                    struct dscow_super *nsb)
{
  *nsb = v->sb;
  uuid_generate (nsb->uuid);
  nsb->version_minor = DSCOW_VERSION_MINOR;
  nsb->incompat |= DSCOW_INCOMPAT_LOWER;
  chain_unlink_up (nsb);
  memcpy (nsb->lower_uuid, v->sb.uuid, 16);
  snprintf (nsb->lower_uri, sizeof nsb->lower_uri, "%s", v->cow->uri);
  nsb->cow_size = nb->size;
  nsb->generation = 1;
  nsb->state = DSCOW_STATE_CLEAN;
  nsb->flags &= ~(DSCOW_FLAG_HYDRATED | DSCOW_FLAG_RESETTING);
  nsb->create_time = (uint64_t) time (NULL);
  uint8_t *buf = vol_alloc_aligned (2 * DSCOW_SUPER_SIZE);
  int r = buf ? vol_zero_bitmap (nb, nsb) : -ENOMEM;
  if (r == 0)
    {
      dscow_super_encode (nsb, buf + DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE);
      r = backend_flush_sync (nb);
    }
  if (r == 0)
    r = backend_pwrite_sync (nb, buf, 0, 2 * DSCOW_SUPER_SIZE, BK_FUA);
  free (buf);
  return r;
}

/* The committed snapshot in memory: the top joins the frozen layers, nb
 * is the new, empty top. */
static void
chain_push (struct volume *v, struct backend *nb, const struct dscow_super *nsb,
            uint8_t *newmap)
{
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK;
  v->lower[v->nlower++] = (struct vol_layer){
    .bk = v->cow, .sb = v->sb, .map = v->map, .chunks = v->cow_chunks
  };
  v->cow = nb;
  v->sb = *nsb;
  v->map = newmap;
  memset (v->dmap, 0, bm);
  memset (v->dirty, 0, v->nblocks * sizeof *v->dirty);
  v->cow_chunks = 0;
  v->generation = v->sb.generation;
}

/* The new top is the owner's: dirty, with the epoch and owner. */
static int
chain_take_top (struct volume *v, uint64_t epoch, uint32_t owner)
{
  v->sb.epoch = epoch;
  v->sb.owner_node = owner;
  v->sb.state = DSCOW_STATE_DIRTY;
  return vol_write_super (v, false);
}

static int
chain_check_state (struct volume *v, const char *what, bool drained, char *err,
                   size_t errlen)
{
  const char *why = NULL;
  if (v->state != VOL_STATE_ACTIVE && v->state != VOL_STATE_HELD)
    why = "it is not active on this host";
  else if (v->commit == DSCOW_COMMIT_NONE)
    why = "it is transient (commit none): it keeps no metadata";
  else if (drained && (v->in_flight || !commit_idle (v)))
    why = "requests are still in flight";
  if (!why)
    return 0;
  snprintf (err, errlen, "volume %s: no %s: %s", v->name, what, why);
  return -COW_E_USAGE;
}

/* The volume may change its chain now (held and drained). */
static int
chain_check_ready (struct volume *v, const char *what, char *err, size_t errlen)
{
  return chain_check_state (v, what, true, err, errlen);
}

int
vol_snapshot_check (struct volume *v, const char *name, const char *uri,
                    bool drained, char *err, size_t errlen)
{
  char key[sizeof ((struct backend *) 0)->key];
  int r = chain_check_state (v, "snapshot", drained, err, errlen);
  if (r < 0)
    return r;
  if (!dscow_name_valid (name) || chain_find (v, name) >= 0)
    {
      snprintf (err, errlen, "volume %s: snapshot name '%s' is %s", v->name,
                name,
                dscow_name_valid (name)
                    ? "taken already"
                    : "not valid (1 to 63 letters, digits, '.', '_', '-')");
      return dscow_name_valid (name) ? -COW_E_EXISTS : -COW_E_USAGE;
    }
  if (v->mrg.active)
    {
      snprintf (err, errlen, "volume %s: no snapshot while a merge runs",
                v->name);
      return -COW_E_BUSY;
    }
  if (!v->base)
    {
      snprintf (err, errlen,
                "volume %s: no snapshot: its base was dropped "
                "(unbase); a snapshot layer needs the chain down to a base",
                v->name);
      return -COW_E_USAGE;
    }
  if (v->nlower + 2 > DSCOW_CHAIN_MAX)
    {
      snprintf (err, errlen,
                "volume %s: the chain has %u layers, the most "
                "there may be; merge or roll back first",
                v->name, v->nlower + 1);
      return -COW_E_USAGE;
    }
  backend_key (uri, key, sizeof key);
  if (chain_uses (v, key)) /* before its lock says "in use" */
    return chain_err_used (v, uri, err, errlen);
  return 0;
}

int
vol_snapshot_commit (struct volume *v, const char *name, struct backend *nb,
                     char *err, size_t errlen)
{
  struct dscow_super nsb, old = v->sb;
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK;
  uint8_t *newmap = NULL;
  int r;
  if (chain_uses (v, nb->key)) /* another name for a device of the chain */
    {
      r = chain_err_used (v, nb->uri, err, errlen);
      goto out_close;
    }
  newmap = vol_alloc_aligned (bm);
  if (!newmap || (r = chain_format_layer (v, nb, &nsb)) < 0)
    {
      r = newmap ? r : -ENOMEM;
      snprintf (err, errlen,
                "volume %s: formatting the new layer %s "
                "failed: %s",
                v->name, nb->uri, strerror (-r));
      goto out_close;
    }
  vol_crash_point ("snapshot-formatted");
  /* The commit: the top freezes and names the new layer. */
  v->sb.ro_compat |= DSCOW_RO_COMPAT_FROZEN;
  memcpy (v->sb.upper_uuid, nsb.uuid, 16);
  snprintf (v->sb.upper_uri, sizeof v->sb.upper_uri, "%s", nb->uri);
  snprintf (v->sb.snap_name, sizeof v->sb.snap_name, "%s", name);
  v->sb.snap_time = (uint64_t) time (NULL);
  v->sb.state = DSCOW_STATE_CLEAN;
  v->sb.version_minor = DSCOW_VERSION_MINOR;
  if ((r = vol_write_super (v, true)) < 0)
    {
      /* Not durable, or maybe it is: the next open says which. */
      v->sb = old;
      snprintf (err, errlen,
                "volume %s: freezing layer %s failed: %s; the "
                "volume keeps its chain as it was",
                v->name, v->cow->uri, strerror (-r));
      goto out_close;
    }
  vol_crash_point ("snapshot-committed");
  chain_push (v, nb, &nsb, newmap);
  qb_log (LOG_INFO, "volume: %s: snapshot %s: layer %s frozen, new top %s",
          v->name, name, v->lower[v->nlower - 1].bk->uri, nb->uri);
  if ((r = chain_take_top (v, old.epoch, old.owner_node)) < 0)
    snprintf (err, errlen,
              "volume %s: snapshot %s is taken, but marking "
              "the new top %s in use failed: %s",
              v->name, name, nb->uri, strerror (-r));
  return r;

out_close:
  free (newmap);
  backend_close (nb);
  return r;
}

int
vol_snapshot (struct volume *v, const char *uri, const char *name,
              const struct backend_opts *bo, char *err, size_t errlen)
{
  struct backend *nb;
  int r = vol_snapshot_check (v, name, uri, true, err, errlen);
  if (r == 0)
    r = vol_layer_open (v->name, v->sb.volume_size, v->cs, v->direct, uri, bo,
                        &nb, err, errlen);
  return r < 0 ? r : vol_snapshot_commit (v, name, nb, err, errlen);
}

/* --- rollback and reset --- */

/* Layer r is the new top, empty: in memory, as on disk. */
static void
chain_pop_to (struct volume *v, unsigned r, char **freed, unsigned *nfreed)
{
  uint64_t bm = (uint64_t) v->nblocks * DSCOW_BITMAP_BLOCK;
  *nfreed = 0;
  if (r < v->nlower)
    {
      for (unsigned i = r + 1; i < v->nlower; i++)
        {
          freed[(*nfreed)++] = strdup (v->lower[i].bk->uri);
          chain_drop (&v->lower[i]);
        }
      freed[(*nfreed)++] = strdup (v->cow->uri);
      backend_close (v->cow);
      v->cow = v->lower[r].bk;
      v->sb = v->lower[r].sb;
      free (v->lower[r].map);
      v->lower[r] = (struct vol_layer){ 0 };
      v->nlower = r;
      v->generation = v->sb.generation;
    }
  memset (v->map, 0, bm);
  memset (v->dmap, 0, bm);
  memset (v->dirty, 0, v->nblocks * sizeof *v->dirty);
  v->cow_chunks = 0;
}

/* Empty layer r and drop the layers above it: see the design above. */
static int
chain_reset_to (struct volume *v, unsigned r, const char *what, char **freed,
                unsigned *nfreed, char *err, size_t errlen)
{
  struct dscow_super *rsb = chain_sb (v, r), old = *rsb;
  if (r < v->nlower)
    {
      chain_unlink_up (rsb);
      rsb->epoch = v->sb.epoch;
      rsb->owner_node = v->sb.owner_node;
      rsb->commit = v->sb.commit;
    }
  rsb->state = DSCOW_STATE_DIRTY;
  rsb->flags |= DSCOW_FLAG_RESETTING;
  rsb->incompat |= DSCOW_INCOMPAT_RESETTING;
  rsb->flags &= ~DSCOW_FLAG_HYDRATED;
  rsb->version_minor = DSCOW_VERSION_MINOR;
  int ret = chain_put (v, r);
  if (ret < 0)
    {
      *rsb = old;
      snprintf (err, errlen,
                "volume %s: %s: writing the superblock of %s "
                "failed: %s; the chain is as it was",
                v->name, what, chain_bk (v, r)->uri, strerror (-ret));
      return ret;
    }
  vol_crash_point (r < v->nlower ? "rollback-committed" : "reset-committed");
  chain_pop_to (v, r, freed, nfreed);
  if ((ret = chain_reset_finish (v, err, errlen)) < 0
      || (ret = vol_write_super (v, false)) < 0)
    {
      if (!err[0])
        snprintf (err, errlen,
                  "volume %s: %s is committed, but finishing "
                  "it on %s failed: %s; it finishes at the next attach",
                  v->name, what, v->cow->uri, strerror (-ret));
      return ret;
    }
  return 0;
}

int
vol_rollback (struct volume *v, const char *name, char **freed,
              unsigned *nfreed, char *err, size_t errlen)
{
  *nfreed = 0;
  err[0] = '\0';
  int r = chain_check_ready (v, name ? "rollback" : "reset", err, errlen);
  if (r < 0)
    return r;
  int k = name ? chain_find (v, name) : (int) v->nlower - 1;
  if (name && k < 0)
    {
      snprintf (err, errlen, "volume %s has no snapshot called %s", v->name,
                name);
      return -COW_E_NO_SUCH_SNAPSHOT;
    }
  if (k >= 0 && (v->lower[k].sb.flags & DSCOW_FLAG_MERGING))
    {
      snprintf (err, errlen,
                "volume %s: snapshot %s is the target of a merge: its "
                "layer no longer holds the snapshot; %s",
                v->name, name,
                v->mrg.active ? "the merge is running (cowctl status shows it)"
                              : "the merge stopped before its end; run cowctl "
                                "merge to finish it");
      return -COW_E_BUSY;
    }
  if (v->mrg.active || export_running (v))
    {
      snprintf (err, errlen, "volume %s: no %s while %s runs%s", v->name,
                name ? "rollback" : "reset",
                v->mrg.active ? "a merge" : "an export",
                v->mrg.active ? ""
                              : " (it would change what "
                                "the export copies)");
      return -COW_E_BUSY;
    }
  if (k < 0 && !v->base)
    {
      snprintf (err, errlen,
                "volume %s: no reset: its base was dropped "
                "(unbase), so the volume has nothing below its CoW layer",
                v->name);
      return -COW_E_USAGE;
    }
  vol_crash_point (name ? "rollback-start" : "reset-start");
  r = chain_reset_to (v, (unsigned) (k + 1), name ? "rollback" : "reset", freed,
                      nfreed, err, errlen);
  if (r == 0)
    qb_log (LOG_INFO, "volume: %s: %s%s: top %s is empty, %u layers freed",
            v->name, name ? "rolled back to " : "reset", name ? name : "",
            v->cow->uri, *nfreed);
  return r;
}
