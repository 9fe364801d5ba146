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
 *             EACCES, reads EIO: another host may be writing now)
 *   DEGRADED  writes fail at once with EIO
 *
 * Format, open, the standalone takeover and close use the backends'
 * blocking variants (timed into the volume's blocking_io statistic).  The
 * data path never blocks, nor do the cluster's handoff steps: the clean
 * mark (vol_mark_clean_async) and the takeover (vol_takeover_async) read
 * and write through the asynchronous path.
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

#include <qb/qblog.h>
#include <uuid/uuid.h>

#include "loop.h"
#include "volume-int.h"

const char *
vol_commit_name (enum dscow_commit c)
{
  switch (c)
    {
    case DSCOW_COMMIT_SYNC: return "sync";
    case DSCOW_COMMIT_FLUSH: return "flush";
    case DSCOW_COMMIT_NONE: return "none";
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
  static const char *names[] = { "active", "held", "readonly", "fenced",
    "degraded" };
  return s <= VOL_STATE_DEGRADED ? names[s] : "unknown";
}

static void *
vol_alloc_aligned (size_t len)
{
  void *p;
  if (posix_memalign (&p, VOL_ALIGN, len ? len : VOL_ALIGN) != 0)
    return NULL;
  memset (p, 0, len);
  return p;
}

int
vol_err_cow_taken (char *err, size_t errlen, const char *name,
                   const char *cow, const char *user)
{
  snprintf (err, errlen, "volume %s: CoW device %s is the CoW device of "
            "volume %s already; a CoW device belongs to one volume", name,
            cow, user);
  return -1;
}

static int
vol_open_backends (const struct vol_params *p, const struct backend_opts *bo,
                   struct backend **base, struct backend **cow, char *err,
                   size_t errlen)
{
  char e[256];
  struct backend_opts o = *bo;
  o.writable = false;
  o.direct = !p->buffered;      /* block devices are O_DIRECT regardless */
  int r = p->base_uri ? backend_open (p->base_uri, &o, base, e, sizeof e)
    : (*base = NULL, 0);        /* hydrated: no base (vol_load_meta checks) */
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: base %s", p->name, e);
      return r;
    }
  o.writable = true;
  r = backend_open (p->cow_uri, &o, cow, e, sizeof e);
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: CoW device %s", p->name, e);
      backend_close (*base);
      return r;
    }
  const char *user = p->cow_user ? p->cow_user (p->cow_user_ud, *cow) : NULL;
  if (user)
    {
      vol_err_cow_taken (err, errlen, p->name, (*cow)->uri, user);
      r = -EBUSY;
      goto out_close;
    }
  if ((*base && (*base)->align > VOL_ALIGN) || (*cow)->align > VOL_ALIGN)
    {
      snprintf (err, errlen, "volume %s: devices with blocks larger than "
                "%u bytes are not supported", p->name, VOL_ALIGN);
      r = -EINVAL;
      goto out_close;
    }
  return 0;

out_close:
  backend_close (*base);
  backend_close (*cow);
  return r;
}

static int
vol_err (char *err, size_t errlen, const char *name, const char *dev,
         int code)
{
  snprintf (err, errlen, "volume %s: %s: %s", name, dev,
            dscow_strerror (code));
  return -1;
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
    qb_log (LOG_ERR, "volume: %s: writing the superblock failed: %s",
            v->name, strerror (-r));
  return r;
}

/* Is there a dscow volume on the CoW device already? */
static bool
vol_cow_formatted (struct backend *cow)
{
  uint8_t *buf = vol_alloc_aligned (2 * DSCOW_SUPER_SIZE);
  struct dscow_super sb;
  unsigned slot;
  bool found = false;
  if (buf && backend_pread_sync (cow, buf, 0, 2 * DSCOW_SUPER_SIZE) == 0)
    found = dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &sb, &slot) == 0
      || memcmp (buf, DSCOW_MAGIC, DSCOW_MAGIC_LEN) == 0;
  free (buf);
  return found;
}

static int
vol_format_write (struct backend *cow, const struct dscow_super *sb)
{
  uint64_t bm = dscow_bitmap_bytes (sb->volume_size, sb->chunk_size);
  size_t len = 2 * DSCOW_SUPER_SIZE;
  uint8_t *buf = vol_alloc_aligned (len);
  uint8_t *zero = vol_alloc_aligned (1024 * 1024);
  int r = -ENOMEM;
  if (!buf || !zero)
    goto out;
  for (uint64_t off = 0; off < bm; off += 1024 * 1024)
    {
      size_t n = bm - off < 1024 * 1024 ? bm - off : 1024 * 1024;
      if ((r = backend_pwrite_sync (cow, zero, DSCOW_BITMAP_OFFSET + off,
                                      n, 0)) < 0)
        goto out;
    }
  /* Generation 1 belongs in slot 1 (B); slot A stays zero, so the first
   * superblock rewrite (generation 2, slot A) never touches this one. */
  dscow_super_encode (sb, buf + DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE);
  if ((r = backend_flush_sync (cow)) == 0)
    r = backend_pwrite_sync (cow, buf, 0, len, BK_FUA);
out:
  free (buf);
  free (zero);
  return r;
}

int
vol_format (const struct vol_params *p, const struct backend_opts *bo,
            char *err, size_t errlen)
{
  struct backend *base, *cow;
  if (vol_open_backends (p, bo, &base, &cow, err, errlen) < 0)
    return -1;
  int ret = -1;
  uint8_t uuid[16];
  struct dscow_super sb;
  uuid_generate (uuid);
  if (base->size % VOL_ALIGN)
    {
      snprintf (err, errlen, "volume %s: base %s: size %" PRIu64 " is not a "
                "multiple of 4096 bytes", p->name, base->uri, base->size);
      goto out;
    }
  int r = dscow_super_init (&sb, p->name, uuid, base->size,
                            p->chunk_size ? p->chunk_size
                            : DSCOW_CHUNK_DEFAULT, cow->size, base->size,
                            base->ident,
                            p->commit ? p->commit : DSCOW_COMMIT_SYNC);
  if (r == -DSCOW_ETOOSMALL)
    {
      snprintf (err, errlen, "volume %s: CoW device %s is too small: it has "
                "%" PRIu64 " bytes and needs %" PRIu64 " (base %" PRIu64
                " + metadata)", p->name, cow->uri, cow->size,
                dscow_cow_min_size (base->size, sb.chunk_size
                                    ? sb.chunk_size : DSCOW_CHUNK_DEFAULT),
                base->size);
      goto out;
    }
  if (r < 0)
    {
      vol_err (err, errlen, p->name, cow->uri, -r);
      goto out;
    }
  backend_file_stamp (base, &sb.stamp);
  if (!p->force && vol_cow_formatted (cow))
    {
      snprintf (err, errlen, "volume %s: CoW device %s already holds a dscow "
                "volume; use --force to format it again", p->name, cow->uri);
      goto out;
    }
  if ((r = vol_format_write (cow, &sb)) < 0)
    {
      snprintf (err, errlen, "volume %s: formatting CoW device %s failed: %s",
                p->name, cow->uri, strerror (-r));
      goto out;
    }
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
  uint8_t *buf = vol_alloc_aligned (2 * DSCOW_SUPER_SIZE);
  unsigned slot;
  int r = buf ? backend_pread_sync (v->cow, buf, 0,
                                         2 * DSCOW_SUPER_SIZE) : -ENOMEM;
  if (r == 0)
    {
      r = dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &v->sb, &slot);
      if (r < 0)
        vol_err (err, errlen, v->name, v->cow->uri, -r);
    }
  else
    snprintf (err, errlen, "volume %s: reading the superblock of %s failed: "
              "%s", v->name, v->cow->uri, strerror (-r));
  free (buf);
  return r < 0 ? -1 : 0;
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
      snprintf (err, errlen, "volume %s: base %s has %" PRIu64 " bytes but "
                "the volume was created on %" PRIu64 "; refusing to serve it",
                v->name, b->uri, b->size, sb->base_size);
      return -1;
    }
  backend_file_stamp (b, &now);
  dscow_base_changed (sb, &now, b->ident, what, sizeof what, &moved);
  if (what[0] && !v->accept_base)
    {
      snprintf (err, errlen, "volume %s: base %s changed since the volume "
                "was created, or is another file (%s); refusing to serve it; "
                "cowctl attach %s --accept-base-change records it as it is "
                "now", v->name, b->uri, what, v->name);
      return -1;
    }
  if (what[0])
    qb_log (LOG_WARNING, "volume: %s: base %s changed (%s); recorded as it "
            "is now, as the operator asked", v->name, b->uri, what);
  else if (moved)
    qb_log (LOG_NOTICE, "volume: %s: base %s: its file system's device "
            "number changed (inode and times agree); recorded", v->name,
            b->uri);
  else if (sb->stamp.kind == DSCOW_STAMP_NONE && now.kind)
    qb_log (LOG_INFO, "volume: %s: recording the stamp of base %s (none "
            "was recorded)", v->name, b->uri);
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
vol_meta_apply (struct volume *v, const uint8_t *buf, char *err,
                size_t errlen)
{
  bool meta = v->commit != DSCOW_COMMIT_NONE;
  uint64_t bm = dscow_bitmap_bytes (v->sb.volume_size, v->sb.chunk_size);
  struct dscow_super sb;
  unsigned slot;
  int r;
  if ((r = dscow_super_pick (buf, 2 * DSCOW_SUPER_SIZE, &sb, &slot)) < 0)
    {
      vol_err (err, errlen, v->name, v->cow->uri, -r);
      return -1;
    }
  if (sb.volume_size != v->sb.volume_size || sb.chunk_size != v->sb.chunk_size)
    {
      snprintf (err, errlen, "volume %s: the size or chunk size on %s "
                "changed while the volume was open", v->name, v->cow->uri);
      return -1;
    }
  v->sb = sb;
  if (!v->base && !(v->sb.flags & DSCOW_FLAG_HYDRATED))
    {
      snprintf (err, errlen, "volume %s: opened without a base, but %s is "
                "not hydrated", v->name, v->cow->uri);
      return -1;
    }
  if (v->cow->size < dscow_cow_min_size (sb.volume_size, sb.chunk_size))
    {
      vol_err (err, errlen, v->name, v->cow->uri, DSCOW_ETOOSMALL);
      return -1;
    }
  if (v->base && vol_check_base (v, err, errlen) < 0)
    return -1;
  if (v->sb.ro_compat & ~DSCOW_RO_COMPAT_SUPPORTED)
    {
      snprintf (err, errlen, "volume %s: %s uses a feature this agent can "
                "only read; refusing to write it", v->name, v->cow->uri);
      return -1;
    }
  if (meta)
    memcpy (v->map, buf + DSCOW_BITMAP_OFFSET, bm);
  else
    memset (v->map, 0, bm);     /* transient: reset on open */
  memcpy (v->dmap, v->map, bm);
  v->cow_chunks = dscow_bitmap_count (v->map, v->nchunks);
  v->generation = v->sb.generation;
  return 0;
}

/* Read superblock and bitmap from the CoW device into v, blocking (open,
 * and the standalone attach). */
static int
vol_load_meta (struct volume *v, char *err, size_t errlen)
{
  size_t len = vol_meta_len (v);
  uint8_t *buf = vol_alloc_aligned (len);
  int r = buf ? backend_pread_sync (v->cow, buf, 0, len) : -ENOMEM;
  if (r < 0)
    snprintf (err, errlen, "volume %s: reading the metadata of %s failed: "
              "%s", v->name, v->cow->uri, strerror (-r));
  else
    r = vol_meta_apply (v, buf, err, errlen);
  free (buf);
  return r < 0 ? -1 : 0;
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
      return -1;
    }
  v->name = strdup (p->name);
  if (vol_open_backends (p, bo, &v->base, &v->cow, err, errlen) < 0)
    {
      free (v->name);
      free (v);
      return -1;
    }
  if (vol_read_super (v, err, errlen) < 0)       /* geometry first */
    goto out_free;
  if (strcmp (v->sb.name, p->name) != 0)
    {
      snprintf (err, errlen, "volume %s: CoW device %s was formatted for "
                "volume %s; refusing to attach it (it may hold %s's data)",
                p->name, v->cow->uri, v->sb.name, v->sb.name);
      goto out_free;
    }
  v->accept_base = p->accept_base_change;
  v->commit = p->commit ? p->commit : (enum dscow_commit) v->sb.commit;
  v->cs = v->sb.chunk_size;
  v->nchunks = dscow_nr_chunks (v->sb.volume_size, v->cs);
  v->cow_base = (uint64_t) v->sb.meta_chunks * v->cs;
  if (vol_alloc_maps (v) < 0)
    {
      snprintf (err, errlen, "volume %s: out of memory for the bitmap",
                p->name);
      goto out_free;
    }
  if (vol_load_meta (v, err, errlen) < 0)
    goto out_free;
  if (v->sb.state == DSCOW_STATE_DIRTY && v->commit != DSCOW_COMMIT_NONE)
    qb_log (LOG_NOTICE, "volume: %s: was not closed cleanly; the bitmap is "
            "consistent as of its last commit", v->name);
  *out = v;
  return 0;

out_free:
  vol_free (v);
  return -1;
}

/* Taking the volume for writing, once superblock and bitmap were read
 * again: check the generation the handoff named (0: don't), and make the
 * superblock to write say dirty, with our epoch and node. */
static int
vol_takeover_prepare (struct volume *v, uint64_t epoch, uint32_t owner,
                      uint64_t expect_generation, char *err, size_t errlen)
{
  if (expect_generation && v->sb.generation != expect_generation)
    {
      snprintf (err, errlen, "volume %s: bitmap generation on disk is %" PRIu64
                " but the handoff said %" PRIu64, v->name, v->sb.generation,
                expect_generation);
      return -1;
    }
  v->sb.epoch = epoch;
  v->sb.owner_node = owner;
  v->sb.state = DSCOW_STATE_DIRTY;
  v->generation++;
  return 0;
}

/* Take the volume for writing, blocking: mark it dirty with our epoch. */
int
vol_takeover (struct volume *v, uint64_t epoch, uint32_t owner,
              uint64_t expect_generation, char *err, size_t errlen)
{
  if (vol_load_meta (v, err, errlen) < 0
      || vol_takeover_prepare (v, epoch, owner, expect_generation, err,
                               errlen) < 0)
    return -1;
  int r = vol_write_super (v, false);   /* nothing of ours to flush yet */
  if (r < 0)
    {
      snprintf (err, errlen, "volume %s: writing the superblock failed: %s",
                v->name, strerror (-r));
      return -1;
    }
  v->accept_base = false;       /* the change is on disk now */
  v->state = VOL_STATE_ACTIVE;
  v->st.takeovers++;
  hydrate_kick (v);             /* a hydration asked for goes on here */
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
  char err[512];
};

static void
takeover_end (struct takeover_ctx *c, int res)
{
  struct volume *v = c->v;
  if (res == 0)
    {
      v->accept_base = false;   /* the change is on disk now */
      v->state = VOL_STATE_ACTIVE;
      v->st.takeovers++;
      hydrate_kick (v);         /* a hydration asked for goes on here */
    }
  else if (!c->err[0])
    snprintf (c->err, sizeof c->err, "volume %s: %s failed: %s", v->name,
              c->buf ? "writing the superblock" : "reading the metadata",
              strerror (-res));
  c->done (c->opaque, res, res == 0 ? NULL : c->err);
  free (c->buf);
  free (c);
  v->in_flight--;
  vol_check_drained (v);        /* a close may wait for this */
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
      snprintf (c->err, sizeof c->err, "volume %s: reading the metadata of "
                "%s failed: %s", v->name, v->cow->uri, strerror (-res));
      return takeover_end (c, res);
    }
  if (vol_meta_apply (v, c->buf, c->err, sizeof c->err) < 0
      || vol_takeover_prepare (v, c->epoch, c->owner, c->expect_generation,
                               c->err, sizeof c->err) < 0)
    return takeover_end (c, -EINVAL);
  free (c->buf);
  if (v->commit == DSCOW_COMMIT_NONE)
    {
      c->buf = NULL;
      return takeover_end (c, 0);
    }
  if (!(c->buf = vol_super_next (v, &off)))
    {
      snprintf (c->err, sizeof c->err, "volume %s: out of memory for the "
                "superblock", v->name);
      return takeover_end (c, -ENOMEM);
    }
  int r = v->cow->ops->write (v->cow, c->buf, off, DSCOW_SUPER_SIZE, BK_FUA,
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
  *c = (struct takeover_ctx) { .v = v, .buf = c->buf, .epoch = epoch,
    .expect_generation = expect_generation, .owner = owner, .done = done,
    .opaque = opaque };
  v->in_flight++;
  int r = v->cow->ops->read (v->cow, c->buf, 0, len, takeover_read, c);
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
  vol_set_clean (v);
  return vol_write_super (v, true);
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
  vol_check_drained (v);        /* a close may wait for this */
}

/* vol_mark_clean without blocking the loop, for a drained volume: every
 * bit is durable already, so the clean superblock (FUA) and the flush of
 * the data written before it go out together. */
void
vol_mark_clean_async (struct volume *v, vol_done_fn *done, void *opaque)
{
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
  v->st.handoffs++;
  *c = (struct clean_ctx) { .v = v, .buf = vol_super_next (v, &off),
    .pending = 1, .done = done, .opaque = opaque };
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
vol_set_state (struct volume *v, enum vol_state s)
{
  v->state = s;
  if (s == VOL_STATE_ACTIVE)
    hydrate_kick (v);
}

void
vol_fence (struct volume *v)
{
  v->state = VOL_STATE_FENCED;
  vol_resume (v);               /* what waited fails now */
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
  vol_check_drained (opaque);
}

void
vol_check_drained (struct volume *v)
{
  if (!v->drained || v->in_flight || !commit_idle (v))
    return;
  /* Under `flush` bits may still be dirty: a drain makes them durable. */
  for (uint64_t b = 0; b < v->nblocks && v->commit != DSCOW_COMMIT_NONE; b++)
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
  if (vol_defer_done (done, v->drained_opaque, 0) != 0)
    done (v->drained_opaque, 0);
}

void
vol_hold (struct volume *v, vol_done_fn *drained, void *opaque)
{
  v->held = true;
  v->drained = drained;
  v->drained_opaque = opaque;
  vol_check_drained (v);
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
  struct vreq *list = v->held_head;
  v->held_head = v->held_tail = NULL;
  while (list)
    {
      struct vreq *rq = list;
      list = rq->next;
      rq->next = NULL;
      vol_submit (v, rq);
    }
  hydrate_kick (v);
}

struct close_ctx
{
  struct volume *v;
  vol_done_fn *done;
  void *opaque;
};

static void
vol_close_drained (void *opaque, int res)
{
  struct close_ctx *cc = opaque;
  struct volume *v = cc->v;
  int r = 0;
  if (v->state == VOL_STATE_ACTIVE || v->state == VOL_STATE_HELD)
    r = vol_mark_clean (v);
  if (r == 0)
    qb_log (LOG_INFO, "volume: %s: closed clean at generation %" PRIu64,
            v->name, v->generation);
  vol_free (v);
  if (cc->done)
    cc->done (cc->opaque, r);
  free (cc);
}

void
vol_close (struct volume *v, vol_done_fn *done, void *opaque)
{
  struct close_ctx *cc = malloc (sizeof *cc);
  if (!cc)
    abort ();
  *cc = (struct close_ctx) { v, done, opaque };
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
  *d = (struct deferred) { done, opaque, err };
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
  *rq = (struct vreq) { .v = v, .type = type, .buf = buf, .off = off,
    .len = len, .flags = flags, .done = done, .opaque = opaque };
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
  if (v->state == VOL_STATE_FENCED
      || (write && v->state == VOL_STATE_DEGRADED))
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
   * bitmap under us; the first request asks for ownership. */
  bool must_wait = v->held || v->state == VOL_STATE_READONLY;
  if (must_wait)
    {
      rq->next = NULL;
      if (v->held_tail)
        v->held_tail->next = rq;
      else
        v->held_head = rq;
      v->held_tail = rq;
      if (v->state == VOL_STATE_READONLY && v->want_owner_cb)
        v->want_owner_cb (v->want_owner_ud, v);
      return 0;
    }
  v->in_flight++;
  v->st.in_flight = v->in_flight;
  v->client_ns = cowd_now_ns ();        /* hydration yields to this */
  v->submitting++;
  if (rq->type == VR_FLUSH)
    {
      if (v->commit == DSCOW_COMMIT_FLUSH)
        commit_enqueue (v, rq);
      else
        commit_cow_flush (rq);
    }
  else
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
  struct vreq *rq = vol_new_req (v, VR_READ, b, a0, (uint32_t) (a1 - a0), 0,
                                 done, opaque);
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

/* The engine writes aligned parts of a request straight from the
 * caller's buffer, so the buffer must have the same phase as the offset:
 * (buf - off) a multiple of VOL_ALIGN.  Otherwise (or for write zeroes)
 * it gets its own buffer with that phase. */
static int
vol_write_common (struct volume *v, const void *buf, uint64_t off,
                  uint32_t len, unsigned flags, vol_done_fn *done,
                  void *opaque)
{
  char *b = (char *) buf, *alloc = NULL;
  size_t phase = off & (VOL_ALIGN - 1);
  if (!buf || (((uintptr_t) buf - phase) & (VOL_ALIGN - 1)))
    {
      if (!(alloc = vol_alloc_aligned (len + phase)))
        return -ENOMEM;
      b = alloc + phase;
      if (buf)
        memcpy (b, buf, len);
    }
  struct vreq *rq = vol_new_req (v, VR_WRITE, b, off, len, flags, done,
                                 opaque);
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

int
vol_write_zeroes (struct volume *v, uint64_t off, uint32_t len,
                  unsigned flags, vol_done_fn *done, void *opaque)
{
  if (vol_check_range (v, off, len) < 0)
    return -EINVAL;
  v->st.zeroes++;
  return vol_write_common (v, NULL, off, len, flags, done, opaque);
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
  struct vreq *rq = vol_new_req (v, VR_TRIM, NULL, off, len, flags, done,
                                 opaque);
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
      ext[0] = (struct vol_extent) { .length = len, .flags = 0 };
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
      ext[n++] = (struct vol_extent) { .length = run_end - pos,
        .flags = dscow_bit_test (v->map, c) ? 1u : 0u };
      pos = run_end;
    }
  return n;
}

/* --- introspection --- */

const char *vol_name (const struct volume *v) { return v->name; }
uint64_t vol_size (const struct volume *v) { return v->sb.volume_size; }
uint32_t vol_chunk_size (const struct volume *v) { return v->cs; }
enum vol_state vol_get_state (const struct volume *v) { return v->state; }
const struct dscow_super *vol_super (const struct volume *v) { return &v->sb; }
uint64_t vol_cow_chunks (const struct volume *v) { return v->cow_chunks; }
uint64_t vol_generation (const struct volume *v) { return v->generation; }

struct backend *vol_cow_backend (struct volume *v) { return v->cow; }

const char *
vol_health (const struct volume *v)
{
  enum backend_health b = v->base ? v->base->health : BK_HEALTHY;
  enum backend_health h = b > v->cow->health ? b : v->cow->health;
  static const char *names[] = { "healthy", "reconnecting", "degraded",
    "fenced" };
  return names[h];
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
