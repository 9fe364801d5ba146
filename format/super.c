/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* super.c: the superblock: geometry, init, encode, decode and checks.
 *
 * Decoding checks, in this order, so the error names the first thing that
 * is wrong: length, magic, checksum, major version, incompatible
 * features, chunk size, name, state/commit ranges, geometry, size.  Each
 * has its own code (dscow.h) and sentence (dscow_strerror).
 *
 * Minor version 1 adds the base stamp at bytes 304-343 (bytes a minor 0
 * writer leaves zero); it is decoded only from a minor >= 1 superblock, so
 * a minor 0 one reads as "no stamp recorded".  A stamp of kind NONE is
 * written as zeroes, so an encoder may keep an old superblock's minor.
 *
 * Minor version 3 adds the layer chain at bytes 352-2503, decoded only
 * from a minor >= 3 superblock and checked only when its flag is set:
 * with INCOMPAT_LOWER a lower uuid that is not zero and a lower URI that
 * is not empty and ends inside its field; with RO_COMPAT_FROZEN the same
 * of the upper link, and a valid snapshot name.  Otherwise -DSCOW_ECHAIN.
 */
#include <config.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dscow-int.h"
#include "dscow.h"

static const char *const errors[DSCOW_ERR_MAX] = {
  [DSCOW_OK] = "no error",
  [DSCOW_EMAGIC] = "the device has no dscow superblock (bad magic)",
  [DSCOW_ECSUM] = "the superblock checksum does not match (corrupt or torn "
                  "superblock)",
  [DSCOW_EVERSION] = "the superblock has an unsupported major version",
  [DSCOW_EINCOMPAT] = "the volume needs a feature this agent does not "
                      "support (unknown incompatible feature flag)",
  [DSCOW_ECHUNK] = "the chunk size is not a power of two between 4 KiB and "
                   "1 MiB",
  [DSCOW_EGEOMETRY] = "the superblock geometry is inconsistent (sizes, "
                      "metadata chunks or bitmap do not agree)",
  [DSCOW_ETOOSMALL] = "the CoW device is smaller than the base plus the "
                      "metadata",
  [DSCOW_EBASEMISMATCH] = "the base device is not the one this volume was "
                          "created on (identity or size differ)",
  [DSCOW_ENAME] = "the volume name is empty, longer than 63 bytes or has "
                  "characters other than letters, digits, '.', '_' and '-'",
  [DSCOW_ESHORT] = "the superblock buffer is too short",
  [DSCOW_EFORMATTED] = "the device already holds a dscow volume",
  [DSCOW_ESTATE] = "the superblock state or commit policy is out of range",
  [DSCOW_EBASECHANGED] = "the base file changed after the volume was "
                         "created (size, inode or times differ)",
  [DSCOW_ECHAIN]
  = "the superblock's layer chain fields are inconsistent "
    "(a lower or upper layer link without its device or uuid, or a frozen "
    "layer without a snapshot name)",
};

const char *
dscow_strerror (int err)
{
  if (err < 0)
    err = -err;
  if (err >= DSCOW_ERR_MAX || !errors[err])
    return "unknown dscow error";
  return errors[err];
}

bool
dscow_chunk_size_valid (uint32_t cs)
{
  return cs >= DSCOW_CHUNK_MIN && cs <= DSCOW_CHUNK_MAX && !(cs & (cs - 1));
}

uint64_t
dscow_nr_chunks (uint64_t volume_size, uint32_t cs)
{
  return (volume_size + cs - 1) / cs;
}

uint64_t
dscow_bitmap_bytes (uint64_t volume_size, uint32_t cs)
{
  uint64_t bytes = (dscow_nr_chunks (volume_size, cs) + 7) / 8;
  return (bytes + DSCOW_BITMAP_BLOCK - 1) / DSCOW_BITMAP_BLOCK
         * DSCOW_BITMAP_BLOCK;
}

uint32_t
dscow_meta_chunks (uint64_t volume_size, uint32_t cs)
{
  return (uint32_t) ((DSCOW_BITMAP_OFFSET + dscow_bitmap_bytes (volume_size, cs)
                      + cs - 1)
                     / cs);
}

uint64_t
dscow_cow_min_size (uint64_t volume_size, uint32_t cs)
{
  return ((uint64_t) dscow_meta_chunks (volume_size, cs)
          + dscow_nr_chunks (volume_size, cs))
         * cs;
}

uint64_t
dscow_chunk_offset (const struct dscow_super *sb, uint64_t chunk)
{
  return ((uint64_t) sb->meta_chunks + chunk) * sb->chunk_size;
}

unsigned
dscow_super_slot (uint64_t generation)
{
  return (unsigned) (generation % DSCOW_SUPER_SLOTS);
}

bool
dscow_name_valid (const char *name)
{
  size_t n = strnlen (name, DSCOW_NAME_MAX + 1);
  if (n == 0 || n > DSCOW_NAME_MAX || name[0] == '.' || name[0] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    {
      char c = name[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
        return false;
    }
  return true;
}

/* The checks shared by init and decode. */
static int
super_check (const struct dscow_super *sb)
{
  if (!dscow_chunk_size_valid (sb->chunk_size))
    return -DSCOW_ECHUNK;
  if (!dscow_name_valid (sb->name))
    return -DSCOW_ENAME;
  if (sb->state < DSCOW_STATE_CLEAN || sb->state > DSCOW_STATE_DIRTY
      || sb->commit < DSCOW_COMMIT_SYNC || sb->commit > DSCOW_COMMIT_NONE)
    return -DSCOW_ESTATE;
  if (sb->volume_size == 0 || sb->volume_size % 512
      || sb->meta_chunks != dscow_meta_chunks (sb->volume_size, sb->chunk_size))
    return -DSCOW_EGEOMETRY;
  if (sb->cow_size < dscow_cow_min_size (sb->volume_size, sb->chunk_size))
    return -DSCOW_ETOOSMALL;
  return 0;
}

int
dscow_super_init (struct dscow_super *sb, const char *name,
                  const uint8_t uuid[16], uint64_t volume_size,
                  uint32_t chunk_size, uint64_t cow_size, uint64_t base_size,
                  const char *base_id, enum dscow_commit commit)
{
  memset (sb, 0, sizeof *sb);
  sb->version_major = DSCOW_VERSION_MAJOR;
  sb->version_minor = DSCOW_VERSION_MINOR;
  memcpy (sb->uuid, uuid, 16);
  if (strlen (name) > DSCOW_NAME_MAX)
    return -DSCOW_ENAME;
  if (strlen (base_id) > DSCOW_BASE_ID_MAX)
    return -DSCOW_EGEOMETRY;
  strcpy (sb->name, name);
  strcpy (sb->base_id, base_id);
  sb->volume_size = volume_size;
  sb->chunk_size = chunk_size;
  sb->cow_size = cow_size;
  sb->base_size = base_size;
  sb->generation = 1;
  sb->state = DSCOW_STATE_CLEAN;
  sb->commit = commit;
  sb->create_time = (uint64_t) time (NULL);
  if (!dscow_chunk_size_valid (chunk_size))
    return -DSCOW_ECHUNK;
  sb->meta_chunks = dscow_meta_chunks (volume_size, chunk_size);
  return super_check (sb);
}

/* The base stamp (minor 1): kind, 4 bytes of zero, then four u64. */
static void
super_encode_stamp (const struct dscow_base_stamp *st, uint8_t *p)
{
  le32_put (p + SB_BASE_STAMP, st->kind);
  le64_put (p + SB_BASE_DEV, st->dev);
  le64_put (p + SB_BASE_INO, st->ino);
  le64_put (p + SB_BASE_MTIME, st->mtime_ns);
  le64_put (p + SB_BASE_CTIME, st->ctime_ns);
}

static void
super_decode_stamp (const uint8_t *p, struct dscow_base_stamp *st)
{
  st->kind = le32_get (p + SB_BASE_STAMP);
  st->dev = le64_get (p + SB_BASE_DEV);
  st->ino = le64_get (p + SB_BASE_INO);
  st->mtime_ns = le64_get (p + SB_BASE_MTIME);
  st->ctime_ns = le64_get (p + SB_BASE_CTIME);
}

static void
copy_str (char *dst, const uint8_t *src, size_t field)
{
  memcpy (dst, src, field - 1);
  dst[field - 1] = '\0';
}

/* The chain (minor 3): the links, the snapshot name and time. */
static void
super_encode_chain (const struct dscow_super *sb, uint8_t *p)
{
  memcpy (p + SB_LOWER_UUID, sb->lower_uuid, 16);
  memcpy (p + SB_UPPER_UUID, sb->upper_uuid, 16);
  le64_put (p + SB_SNAP_TIME, sb->snap_time);
  memcpy (p + SB_SNAP_NAME, sb->snap_name,
          strnlen (sb->snap_name, SB_NAME_FIELD - 1));
  memcpy (p + SB_LOWER_URI, sb->lower_uri,
          strnlen (sb->lower_uri, SB_URI_FIELD - 1));
  memcpy (p + SB_UPPER_URI, sb->upper_uri,
          strnlen (sb->upper_uri, SB_URI_FIELD - 1));
}

static bool
super_uuid_zero (const uint8_t u[16])
{
  for (int i = 0; i < 16; i++)
    if (u[i])
      return false;
  return true;
}

/* A link: a uuid that is not zero and a URI that ends in its field. */
static bool
super_link_ok (const uint8_t *p, unsigned uuid_at, unsigned uri_at)
{
  return !super_uuid_zero (p + uuid_at) && p[uri_at] != '\0'
         && memchr (p + uri_at, '\0', SB_URI_FIELD) != NULL;
}

static int
super_decode_chain (const uint8_t *p, struct dscow_super *sb)
{
  bool lower = sb->incompat & DSCOW_INCOMPAT_LOWER;
  bool frozen = sb->ro_compat & DSCOW_RO_COMPAT_FROZEN;
  if ((lower || frozen) && sb->version_minor < 3)
    return -DSCOW_ECHAIN;
  if (sb->version_minor < 3)
    return 0;
  if ((lower && !super_link_ok (p, SB_LOWER_UUID, SB_LOWER_URI))
      || (frozen && !super_link_ok (p, SB_UPPER_UUID, SB_UPPER_URI)))
    return -DSCOW_ECHAIN;
  if (lower)
    {
      memcpy (sb->lower_uuid, p + SB_LOWER_UUID, 16);
      copy_str (sb->lower_uri, p + SB_LOWER_URI, SB_URI_FIELD);
    }
  if (frozen)
    {
      memcpy (sb->upper_uuid, p + SB_UPPER_UUID, 16);
      copy_str (sb->upper_uri, p + SB_UPPER_URI, SB_URI_FIELD);
      copy_str (sb->snap_name, p + SB_SNAP_NAME, SB_NAME_FIELD);
      sb->snap_time = le64_get (p + SB_SNAP_TIME);
      if (!dscow_name_valid (sb->snap_name))
        return -DSCOW_ECHAIN;
    }
  return 0;
}

int
dscow_super_encode (const struct dscow_super *sb, uint8_t *p, size_t len)
{
  if (len < DSCOW_SUPER_SIZE)
    return -DSCOW_ESHORT;
  memset (p, 0, DSCOW_SUPER_SIZE);
  memcpy (p + SB_MAGIC, DSCOW_MAGIC, DSCOW_MAGIC_LEN);
  le16_put (p + SB_MAJOR, sb->version_major);
  le16_put (p + SB_MINOR, sb->version_minor);
  le32_put (p + SB_HEADER_SIZE, DSCOW_SUPER_SIZE);
  le64_put (p + SB_COMPAT, sb->compat);
  le64_put (p + SB_INCOMPAT, sb->incompat);
  le64_put (p + SB_RO_COMPAT, sb->ro_compat);
  memcpy (p + SB_UUID, sb->uuid, 16);
  memcpy (p + SB_NAME, sb->name, strnlen (sb->name, SB_NAME_FIELD - 1));
  le64_put (p + SB_VOLUME_SIZE, sb->volume_size);
  le32_put (p + SB_CHUNK_SIZE, sb->chunk_size);
  le32_put (p + SB_META_CHUNKS, sb->meta_chunks);
  le64_put (p + SB_BITMAP_OFFSET, DSCOW_BITMAP_OFFSET);
  le64_put (p + SB_BITMAP_BYTES,
            dscow_bitmap_bytes (sb->volume_size, sb->chunk_size));
  le64_put (p + SB_COW_SIZE, sb->cow_size);
  le64_put (p + SB_BASE_SIZE, sb->base_size);
  memcpy (p + SB_BASE_ID, sb->base_id,
          strnlen (sb->base_id, SB_BASE_ID_FIELD - 1));
  le64_put (p + SB_EPOCH, sb->epoch);
  le64_put (p + SB_GENERATION, sb->generation);
  le32_put (p + SB_STATE, sb->state);
  le32_put (p + SB_FLAGS, sb->flags);
  le32_put (p + SB_COMMIT, sb->commit);
  le32_put (p + SB_OWNER_NODE, sb->owner_node);
  le64_put (p + SB_CREATE_TIME, sb->create_time);
  super_encode_stamp (&sb->stamp, p);
  le32_put (p + SB_HYDRATE_RATE, sb->hydrate_rate);
  super_encode_chain (sb, p);
  le32_put (p + SB_CRC, dscow_crc32c (0, p, SB_CRC));
  return 0;
}

int
dscow_super_decode (const uint8_t *p, size_t len, struct dscow_super *sb)
{
  if (len < DSCOW_SUPER_SIZE)
    return -DSCOW_ESHORT;
  if (memcmp (p + SB_MAGIC, DSCOW_MAGIC, DSCOW_MAGIC_LEN) != 0)
    return -DSCOW_EMAGIC;
  if (le32_get (p + SB_CRC) != dscow_crc32c (0, p, SB_CRC))
    return -DSCOW_ECSUM;
  memset (sb, 0, sizeof *sb);
  sb->version_major = le16_get (p + SB_MAJOR);
  sb->version_minor = le16_get (p + SB_MINOR);
  if (sb->version_major != DSCOW_VERSION_MAJOR
      || le32_get (p + SB_HEADER_SIZE) != DSCOW_SUPER_SIZE)
    return -DSCOW_EVERSION;
  sb->compat = le64_get (p + SB_COMPAT);
  sb->incompat = le64_get (p + SB_INCOMPAT);
  sb->ro_compat = le64_get (p + SB_RO_COMPAT);
  if (sb->incompat & ~DSCOW_INCOMPAT_SUPPORTED)
    return -DSCOW_EINCOMPAT;
  memcpy (sb->uuid, p + SB_UUID, 16);
  copy_str (sb->name, p + SB_NAME, SB_NAME_FIELD);
  sb->volume_size = le64_get (p + SB_VOLUME_SIZE);
  sb->chunk_size = le32_get (p + SB_CHUNK_SIZE);
  sb->meta_chunks = le32_get (p + SB_META_CHUNKS);
  sb->cow_size = le64_get (p + SB_COW_SIZE);
  sb->base_size = le64_get (p + SB_BASE_SIZE);
  copy_str (sb->base_id, p + SB_BASE_ID, SB_BASE_ID_FIELD);
  sb->epoch = le64_get (p + SB_EPOCH);
  sb->generation = le64_get (p + SB_GENERATION);
  sb->state = le32_get (p + SB_STATE);
  sb->flags = le32_get (p + SB_FLAGS);
  sb->commit = le32_get (p + SB_COMMIT);
  sb->owner_node = le32_get (p + SB_OWNER_NODE);
  sb->create_time = le64_get (p + SB_CREATE_TIME);
  if (sb->version_minor >= 1) /* reserved (zero) before minor 1 */
    super_decode_stamp (p, &sb->stamp);
  if (sb->version_minor >= 2) /* reserved (zero) before minor 2 */
    sb->hydrate_rate = le32_get (p + SB_HYDRATE_RATE);
  int r = super_decode_chain (p, sb);
  if (r < 0)
    return r;
  r = super_check (sb);
  if (r < 0)
    return r;
  if (le64_get (p + SB_BITMAP_OFFSET) != DSCOW_BITMAP_OFFSET
      || le64_get (p + SB_BITMAP_BYTES)
             != dscow_bitmap_bytes (sb->volume_size, sb->chunk_size))
    return -DSCOW_EGEOMETRY;
  return 0;
}

int
dscow_super_pick (const uint8_t *buf, size_t len, struct dscow_super *sb,
                  unsigned *slot)
{
  struct dscow_super a, b;
  if (len < DSCOW_SUPER_SLOTS * DSCOW_SUPER_SIZE)
    return -DSCOW_ESHORT;
  int ra = dscow_super_decode (buf, DSCOW_SUPER_SIZE, &a);
  int rb = dscow_super_decode (buf + DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE, &b);
  if (ra == 0 && (rb != 0 || a.generation >= b.generation))
    {
      *sb = a;
      *slot = 0;
      return 0;
    }
  if (rb == 0)
    {
      *sb = b;
      *slot = 1;
      return 0;
    }
  return ra;
}

int
dscow_check_devices (const struct dscow_super *sb, uint64_t cow_size,
                     uint64_t base_size, const char *base_id)
{
  if (cow_size < dscow_cow_min_size (sb->volume_size, sb->chunk_size))
    return -DSCOW_ETOOSMALL;
  if (base_size != sb->base_size || sb->volume_size != base_size
      || strcmp (base_id, sb->base_id) != 0)
    return -DSCOW_EBASEMISMATCH;
  return 0;
}

void
dscow_uuid_format (const uint8_t uuid[16], char out[37])
{
  static const char hex[] = "0123456789abcdef";
  char *o = out;
  for (int i = 0; i < 16; i++)
    {
      if (i == 4 || i == 6 || i == 8 || i == 10)
        *o++ = '-';
      *o++ = hex[uuid[i] >> 4];
      *o++ = hex[uuid[i] & 15];
    }
  *o = '\0';
}
