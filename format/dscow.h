/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libdscow: the on-disk format of a cowherd copy-on-write volume.
 *
 * A dscow volume is a read-only base device plus a CoW device.  The CoW
 * device is identity-mapped:
 *
 *   byte 0      superblock slot A (4096 bytes)
 *   byte 4096   superblock slot B (4096 bytes)
 *   byte 8192   bitmap: one bit per volume chunk, LSB first within a byte,
 *               padded with zeroes to a multiple of 4096 bytes
 *   ...         padding up to meta_chunks * chunk_size
 *   chunk meta_chunks + X   the data of volume chunk X, once bit X is set
 *
 * Superblock updates alternate between the two slots (slot = generation % 2)
 * so that a torn superblock write always leaves the previous one intact;
 * the reader takes the valid slot with the higher generation.
 *
 * Every field is little-endian and fixed width; the crc32c (Castagnoli)
 * over bytes [0, 4092) is stored at byte 4092 after byte order is fixed.
 * The bitmap carries no checksum on purpose: within an epoch bits only go
 * 0 -> 1, so a torn bitmap write can never lose a bit that was durable.
 *
 * This library does no IO and holds no policy; it encodes, decodes and
 * validates.  See dscow(5).
 */
#ifndef DSCOW_H
#define DSCOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C"
{
#endif

#define DSCOW_MAGIC "DSCOW\0\r\n" /* 8 bytes */
#define DSCOW_MAGIC_LEN 8
#define DSCOW_VERSION_MAJOR 1
#define DSCOW_VERSION_MINOR 3

#define DSCOW_SUPER_SIZE 4096u /* one slot */
#define DSCOW_SUPER_SLOTS 2u
#define DSCOW_BITMAP_OFFSET 8192u /* bytes from the start of the CoW device */
/* The bitmap is written in blocks of this size. */
#define DSCOW_BITMAP_BLOCK 4096u

#define DSCOW_CHUNK_MIN 4096u
#define DSCOW_CHUNK_MAX (1024u * 1024u)
#define DSCOW_CHUNK_DEFAULT (64u * 1024u)

#define DSCOW_NAME_MAX 63    /* bytes, plus the terminating NUL */
#define DSCOW_BASE_ID_MAX 95 /* bytes, plus the terminating NUL */
#define DSCOW_URI_MAX 1023   /* a layer's device, plus the NUL */
#define DSCOW_CHAIN_MAX 32   /* layers of one volume, at most */

/* Feature flags.  An agent refuses to open a volume with an unknown
 * incompat bit, opens it read-only with an unknown ro_compat bit and
 * ignores unknown compat bits. */
#define DSCOW_COMPAT_NONE 0u
#define DSCOW_INCOMPAT_NONE 0u
#define DSCOW_RO_COMPAT_NONE 0u
/* minor 2: a background hydration is wanted; hydrate_rate is its limit.  An
 * agent that does not know it simply does not hydrate. */
#define DSCOW_COMPAT_HYDRATING 0x1ull
#define DSCOW_COMPAT_SUPPORTED DSCOW_COMPAT_HYDRATING
/* minor 3, layer chains (snapshots): this layer lies over another dscow
 * layer (lower_uuid, lower_uri), not over the base directly.  An agent
 * that does not know chains must not read it alone: incompatible. */
#define DSCOW_INCOMPAT_LOWER 0x1ull
/* minor 3: set with FLAG_RESETTING, so that an agent that would read the
 * bitmap as it is on disk refuses the volume until the reset is done. */
#define DSCOW_INCOMPAT_RESETTING 0x2ull
#define DSCOW_INCOMPAT_SUPPORTED                                               \
  (DSCOW_INCOMPAT_LOWER | DSCOW_INCOMPAT_RESETTING)
/* minor 3: this layer is a frozen snapshot (snap_name, snap_time) with a
 * layer above it (upper_uuid, upper_uri); never written again except its
 * superblock (rollback, merge).  An older agent refuses to write it. */
#define DSCOW_RO_COMPAT_FROZEN 0x1ull
#define DSCOW_RO_COMPAT_SUPPORTED DSCOW_RO_COMPAT_FROZEN

  /* Superblock state */
  enum dscow_state
  {
    DSCOW_STATE_CLEAN = 1, /* closed cleanly: bitmap and data flushed */
    DSCOW_STATE_DIRTY = 2, /* open by an owner */
  };

/* Superblock flags */
#define DSCOW_FLAG_HYDRATED 0x1u /* every chunk is in the CoW layer */
/* minor 3: a reset or rollback is committed: read the bitmap as all zero
 * until it is zeroed on disk and the flag cleared. */
#define DSCOW_FLAG_RESETTING 0x2u
/* minor 3, on a frozen layer: the layer above is being merged into it, so
 * it no longer holds its snapshot (a rollback to it is refused). */
#define DSCOW_FLAG_MERGING 0x4u

  /* Commit policies, recorded in the superblock as the volume's default */
  enum dscow_commit
  {
    DSCOW_COMMIT_SYNC = 1,  /* bit durable before the write is acked */
    DSCOW_COMMIT_FLUSH = 2, /* bits durable on FLUSH / FUA */
    DSCOW_COMMIT_NONE = 3,  /* transient: metadata never written */
  };

  /* What a base file looked like when it was recorded (minor version 1):
   * checked at every open, at no cost per IO.  kind DSCOW_STAMP_NONE means
   * nothing is recorded (a LUN or block device, whose identity is base_id
   * and base_size, or a superblock written by minor version 0). */
  enum dscow_stamp_kind
  {
    DSCOW_STAMP_NONE = 0,
    DSCOW_STAMP_FILE = 1,
  };

  struct dscow_base_stamp
  {
    uint32_t kind;     /* enum dscow_stamp_kind */
    uint64_t dev;      /* st_dev of the file system */
    uint64_t ino;      /* st_ino */
    uint64_t mtime_ns; /* st_mtim, ns since the epoch */
    uint64_t ctime_ns; /* st_ctim, ns since the epoch */
  };

  /* The decoded superblock, in host byte order. */
  struct dscow_super
  {
    uint16_t version_major;
    uint16_t version_minor;
    uint64_t compat;
    uint64_t incompat;
    uint64_t ro_compat;
    uint8_t uuid[16];
    char name[DSCOW_NAME_MAX + 1];
    uint64_t volume_size; /* bytes, a multiple of 512 */
    uint32_t chunk_size;  /* bytes, power of two in [4K, 1M] */
    uint32_t meta_chunks; /* chunks reserved at the start of the CoW */
    uint64_t cow_size;    /* bytes of the CoW device at format time */
    uint64_t base_size;   /* bytes of the base device */
    char base_id[DSCOW_BASE_ID_MAX + 1]; /* stable identity of the base */
    uint64_t epoch;       /* owner epoch, written at each takeover */
    uint64_t generation;  /* bumped at every superblock/bitmap commit */
    uint32_t state;       /* enum dscow_state */
    uint32_t flags;       /* DSCOW_FLAG_* */
    uint32_t commit;      /* enum dscow_commit */
    uint32_t owner_node;  /* cluster node id of the last owner, 0 = none */
    uint64_t create_time; /* seconds since the epoch, informational */
    struct dscow_base_stamp stamp; /* minor 1; zero when read from minor 0 */
    uint32_t hydrate_rate; /* MB/s, 0 = unlimited; with COMPAT_HYDRATING */
    /* minor 3: the chain (zero / empty when the flags are not set) */
    uint8_t lower_uuid[16]; /* with INCOMPAT_LOWER: the layer below */
    char lower_uri[DSCOW_URI_MAX + 1];
    uint8_t upper_uuid[16]; /* with RO_COMPAT_FROZEN: the layer above */
    char upper_uri[DSCOW_URI_MAX + 1];
    char snap_name[DSCOW_NAME_MAX + 1]; /* with RO_COMPAT_FROZEN */
    uint64_t snap_time; /* seconds since the epoch, when frozen */
  };

  /* Errors: distinct so an operator can tell each way a device is wrong
   * apart.  Functions return 0 or one of these, negated. */
  enum dscow_err
  {
    DSCOW_OK = 0,
    DSCOW_EMAGIC = 1,    /* no dscow magic: not a CoW device */
    DSCOW_ECSUM,         /* superblock checksum mismatch */
    DSCOW_EVERSION,      /* unsupported major version */
    DSCOW_EINCOMPAT,     /* unknown incompatible feature */
    DSCOW_ECHUNK,        /* chunk size not a power of two in range */
    DSCOW_EGEOMETRY,     /* sizes inconsistent (meta_chunks, bitmap) */
    DSCOW_ETOOSMALL,     /* CoW device smaller than base + metadata */
    DSCOW_EBASEMISMATCH, /* base identity or size differ */
    DSCOW_ENAME,         /* name empty, too long or bad characters */
    DSCOW_ESHORT,        /* buffer too short */
    DSCOW_EFORMATTED,    /* device already holds a dscow volume */
    DSCOW_ESTATE,        /* state or commit field out of range */
    DSCOW_EBASECHANGED,  /* base file changed since it was recorded */
    DSCOW_ECHAIN,        /* layer chain fields inconsistent */
    DSCOW_ERR_MAX
  };

  /* One sentence (no trailing period) for an error code, positive or
   * negative.  Never NULL. */
  const char *dscow_strerror (int err);

  /* crc32c (Castagnoli), as used by iSCSI and ext4: start with crc = 0. */
  uint32_t dscow_crc32c (uint32_t crc, const void *buf, size_t len);

  /* A volume name: 1 to DSCOW_NAME_MAX letters, digits, '.', '_' and '-',
   * not starting with '.' or '-'. */
  bool dscow_name_valid (const char *name);

  /* Geometry */
  bool dscow_chunk_size_valid (uint32_t chunk_size);
  uint64_t dscow_nr_chunks (uint64_t volume_size, uint32_t chunk_size);
  /* Bytes the bitmap occupies on disk (a multiple of DSCOW_BITMAP_BLOCK). */
  uint64_t dscow_bitmap_bytes (uint64_t volume_size, uint32_t chunk_size);
  /* Chunks reserved for superblocks and bitmap. */
  uint32_t dscow_meta_chunks (uint64_t volume_size, uint32_t chunk_size);
  /* Smallest CoW device that can hold a volume of this geometry. */
  uint64_t dscow_cow_min_size (uint64_t volume_size, uint32_t chunk_size);
  /* Byte offset on the CoW device of volume chunk X's data. */
  uint64_t dscow_chunk_offset (const struct dscow_super *sb, uint64_t chunk);

  /* Fill a new superblock (epoch 0, generation 1, state clean).  Returns 0 or
   * -DSCOW_ECHUNK / -DSCOW_ENAME / -DSCOW_ETOOSMALL / -DSCOW_EGEOMETRY. */
  int dscow_super_init (struct dscow_super *sb, const char *name,
                        const uint8_t uuid[16], uint64_t volume_size,
                        uint32_t chunk_size, uint64_t cow_size,
                        uint64_t base_size, const char *base_id,
                        enum dscow_commit commit);

  /* Encode into exactly DSCOW_SUPER_SIZE bytes (checksum included). */
  int dscow_super_encode (const struct dscow_super *sb, uint8_t *buf,
                          size_t len);

  /* Decode and validate one slot.  Returns 0 or a negative DSCOW_E*. */
  int dscow_super_decode (const uint8_t *buf, size_t len,
                          struct dscow_super *sb);

  /* Decode both slots (buf holds DSCOW_SUPER_SLOTS * DSCOW_SUPER_SIZE bytes)
   * and return the valid one with the higher generation.  If neither is
   * valid, return the error of slot A.  *slot gets 0 or 1. */
  int dscow_super_pick (const uint8_t *buf, size_t len, struct dscow_super *sb,
                        unsigned *slot);

  /* The slot a superblock with this generation is written to. */
  unsigned dscow_super_slot (uint64_t generation);

  /* Checks an agent makes at open time against the real devices. */
  int dscow_check_devices (const struct dscow_super *sb, uint64_t cow_size,
                           uint64_t base_size, const char *base_id);

  /* Has the base changed since it was recorded in sb?  Compares the base's
   * identity now (now_id, as base_id) and its file stamp now (either stamp
   * of kind DSCOW_STAMP_NONE: not compared).  Returns 0 when they agree,
   * else -DSCOW_EBASECHANGED with what differs, comma-separated, in what
   * ("inode 12 -> 13, modification time ... -> ...").  A device number that
   * differs while inode and times agree is no change (the number of a file
   * system can move across a reboot); *dev_moved says so, for the caller to
   * re-record.  The size is dscow_check_devices' business. */
  int dscow_base_changed (const struct dscow_super *sb,
                          const struct dscow_base_stamp *now,
                          const char *now_id, char *what, size_t len,
                          bool *dev_moved);

  /* Bitmap helpers on an in-memory bitmap (LSB-first within each byte). */
  static inline bool dscow_bit_test (const uint8_t *map, uint64_t bit)
  {
    return (map[bit >> 3] >> (bit & 7)) & 1;
  }

  static inline void dscow_bit_set (uint8_t *map, uint64_t bit)
  {
    map[bit >> 3] |= (uint8_t) (1u << (bit & 7));
  }

  static inline void dscow_bit_clear (uint8_t *map, uint64_t bit)
  {
    map[bit >> 3] &= (uint8_t) ~(1u << (bit & 7));
  }

  /* Number of set bits among the first nbits. */
  uint64_t dscow_bitmap_count (const uint8_t *map, uint64_t nbits);

  /* Length of the run of bits equal to bit `start`'s value, starting at
   * start, at most max bits.  Used for extents. */
  uint64_t dscow_bitmap_run (const uint8_t *map, uint64_t start, uint64_t max);

  /* Format a UUID as 36 characters plus NUL. */
  void dscow_uuid_format (const uint8_t uuid[16], char out[37]);

#ifdef __cplusplus
}
#endif

#endif /* DSCOW_H */
