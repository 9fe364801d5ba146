/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_format.c: unit tests of libdscow (format/dscow.h).
 *
 * What is covered, and how:
 *   - crc32c: the standard check value, the RFC 3720 (iSCSI) vectors, and
 *     chaining split at every position and across the 8-byte fast path;
 *   - superblock encode/decode: every field survives a round trip, and the
 *     encoded bytes sit at the offsets dscow(5) documents;
 *   - every decode error gives its own code: a test corrupts one field,
 *     re-computes the checksum (poke) so that the field, not the checksum,
 *     is what the decoder objects to, and expects that field's code;
 *   - dscow_super_pick: generation order, torn slots, a fresh format (slot
 *     B all zero), a simulated sequence of alternating writes;
 *   - bitmap: bit order, count, and runs across 64-bit word boundaries and
 *     the max limit, plus a seeded comparison against a naive scan;
 *   - geometry helpers on known values, device checks, error sentences;
 *   - the base stamp (minor 1): its offsets, ignored in a minor 0
 *     superblock, and what dscow_base_changed reports.
 *
 * The tests share one file-scope buffer (buf) and need no IO, so they run
 * the same with CK_FORK=no under valgrind.
 */
#include <config.h>

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dscow.h"

#define GIB (1024ull * 1024 * 1024)

static const uint8_t uuid[16]
    = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const char base_id[] = "naa.6001405abcdef";
static uint8_t buf[2 * DSCOW_SUPER_SIZE];

/* A valid 1 GiB volume, 64 KiB chunks, on a CoW device of minimal size. */
static void
make_super (struct dscow_super *sb)
{
  ck_assert_int_eq (dscow_super_init (sb, "vm-1.disk_0", uuid, GIB, 65536,
                                      dscow_cow_min_size (GIB, 65536), GIB,
                                      base_id, DSCOW_COMMIT_SYNC),
                    0);
}

static uint64_t
get_le (const uint8_t *p, size_t off, int width)
{
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; i--)
    v = v << 8 | p[off + (size_t) i];
  return v;
}

/* Set a little-endian field and fix the checksum. */
static void
poke (uint8_t *p, size_t off, uint64_t v, int width)
{
  for (int i = 0; i < width; i++)
    p[off + (size_t) i] = (uint8_t) (v >> (8 * i));
  uint32_t crc = dscow_crc32c (0, p, 4092);
  for (int i = 0; i < 4; i++)
    p[4092 + i] = (uint8_t) (crc >> (8 * i));
}

/* Encode a valid superblock into buf, change one field, decode. */
static int
decode_after_poke (size_t off, uint64_t v, int width)
{
  struct dscow_super sb, out;
  make_super (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  poke (buf, off, v, width);
  return dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out);
}

/* --- crc32c --- */

START_TEST (test_crc32c_vectors)
{
  uint8_t v[32];
  ck_assert_uint_eq (dscow_crc32c (0, "123456789", 9), 0xE3069283u);
  ck_assert_uint_eq (dscow_crc32c (0, "", 0), 0);
  /* RFC 3720 appendix B.4 */
  memset (v, 0, sizeof v);
  ck_assert_uint_eq (dscow_crc32c (0, v, sizeof v), 0x8A9136AAu);
  memset (v, 0xff, sizeof v);
  ck_assert_uint_eq (dscow_crc32c (0, v, sizeof v), 0x62A8AB43u);
  for (int i = 0; i < 32; i++)
    v[i] = (uint8_t) i;
  ck_assert_uint_eq (dscow_crc32c (0, v, sizeof v), 0x46DD794Eu);
  for (int i = 0; i < 32; i++)
    v[i] = (uint8_t) (31 - i);
  ck_assert_uint_eq (dscow_crc32c (0, v, sizeof v), 0x113FDB5Cu);
}
END_TEST

START_TEST (test_crc32c_chaining)
{
  /* Split the check string at every position. */
  for (size_t k = 0; k <= 9; k++)
    {
      uint32_t a = dscow_crc32c (0, "123456789", k);
      ck_assert_uint_eq (dscow_crc32c (a, "123456789" + k, 9 - k), 0xE3069283u);
    }
  /* A longer, unaligned buffer through the 8-byte path, in odd pieces. */
  uint8_t big[1000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t) (i * 131 + 7);
  uint32_t whole = dscow_crc32c (0, big + 1, sizeof big - 1);
  for (size_t step = 1; step < 40; step += 3)
    {
      uint32_t c = 0;
      for (size_t off = 1; off < sizeof big; off += step)
        {
          size_t n = sizeof big - off < step ? sizeof big - off : step;
          c = dscow_crc32c (c, big + off, n);
        }
      ck_assert_uint_eq (c, whole);
    }
  /* Zero-length pieces leave the running value alone. */
  ck_assert_uint_eq (dscow_crc32c (whole, big, 0), whole);
}
END_TEST

/* --- superblock round trip --- */

static void
fill_every_field (struct dscow_super *sb)
{
  static const char long_name[]
      = "a23456789012345678901234567890123456789012345678901234567890123";
  char long_id[DSCOW_BASE_ID_MAX + 1];
  memset (long_id, 'x', DSCOW_BASE_ID_MAX);
  long_id[DSCOW_BASE_ID_MAX] = '\0';
  uint8_t u[16];
  for (int i = 0; i < 16; i++)
    u[i] = (uint8_t) (0xf0 - i);
  ck_assert_uint_eq (strlen (long_name), DSCOW_NAME_MAX);
  ck_assert_int_eq (dscow_super_init (sb, long_name, u, 3 * GIB + 512, 4096,
                                      1ull << 40, 3 * GIB + 512, long_id,
                                      DSCOW_COMMIT_FLUSH),
                    0);
  sb->version_minor = 7;
  sb->compat = 0x8000000000000001ull;
  sb->ro_compat = 0x4000000000000002ull; /* decodes; cowd refuses */
  sb->epoch = 0x8123456789abcdefull;
  sb->generation = 0xfedcba9876543210ull;
  sb->state = DSCOW_STATE_DIRTY;
  sb->flags = DSCOW_FLAG_HYDRATED | 0x80000000u;
  sb->owner_node = 0xffffffffu;
  sb->create_time = 0x0123456789ull;
}

START_TEST (test_roundtrip_every_field)
{
  struct dscow_super sb, out;
  fill_every_field (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  memset (&out, 0x55, sizeof out);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  ck_assert_uint_eq (out.version_major, DSCOW_VERSION_MAJOR);
  ck_assert_uint_eq (out.version_minor, 7);
  ck_assert_uint_eq (out.compat, sb.compat);
  ck_assert_uint_eq (out.incompat, 0);
  ck_assert_uint_eq (out.ro_compat, sb.ro_compat);
  ck_assert_mem_eq (out.uuid, sb.uuid, 16);
  ck_assert_str_eq (out.name, sb.name);
  ck_assert_uint_eq (out.volume_size, 3 * GIB + 512);
  ck_assert_uint_eq (out.chunk_size, 4096);
  ck_assert_uint_eq (out.meta_chunks, dscow_meta_chunks (3 * GIB + 512, 4096));
  ck_assert_uint_eq (out.cow_size, 1ull << 40);
  ck_assert_uint_eq (out.base_size, 3 * GIB + 512);
  ck_assert_str_eq (out.base_id, sb.base_id);
  ck_assert_uint_eq (out.epoch, sb.epoch);
  ck_assert_uint_eq (out.generation, sb.generation);
  ck_assert_uint_eq (out.state, DSCOW_STATE_DIRTY);
  ck_assert_uint_eq (out.flags, sb.flags);
  ck_assert_uint_eq (out.commit, DSCOW_COMMIT_FLUSH);
  ck_assert_uint_eq (out.owner_node, 0xffffffffu);
  ck_assert_uint_eq (out.create_time, 0x0123456789ull);
  /* Both structs were zeroed before filling, padding included. */
  ck_assert_int_eq (memcmp (&sb, &out, sizeof sb), 0);
  /* Encoding the decoded superblock gives the same bytes. */
  static uint8_t again[DSCOW_SUPER_SIZE];
  ck_assert_int_eq (dscow_super_encode (&out, again, sizeof again), 0);
  ck_assert_int_eq (memcmp (buf, again, DSCOW_SUPER_SIZE), 0);
}
END_TEST

/* Minor 1: the base stamp at 304-343, decoded only from minor >= 1. */
START_TEST (test_base_stamp)
{
  struct dscow_super sb, out;
  make_super (&sb);
  ck_assert_uint_eq (sb.version_minor, DSCOW_VERSION_MINOR);
  sb.stamp = (struct dscow_base_stamp){ DSCOW_STAMP_FILE, 0x0801, 12,
                                        978307200000000000ull,
                                        978307200123456789ull };
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  ck_assert_uint_eq (get_le (buf, 304, 4), DSCOW_STAMP_FILE);
  ck_assert_uint_eq (get_le (buf, 308, 4), 0);
  ck_assert_uint_eq (get_le (buf, 312, 8), 0x0801);
  ck_assert_uint_eq (get_le (buf, 320, 8), 12);
  ck_assert_uint_eq (get_le (buf, 328, 8), 978307200000000000ull);
  ck_assert_uint_eq (get_le (buf, 336, 8), 978307200123456789ull);
  for (size_t i = 344; i < 4092; i++)
    ck_assert_uint_eq (buf[i], 0);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  ck_assert_int_eq (memcmp (&out.stamp, &sb.stamp, sizeof sb.stamp), 0);
  poke (buf, 10, 0, 2); /* minor 0: bytes 304+ are reserved */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  ck_assert_uint_eq (out.stamp.kind, DSCOW_STAMP_NONE);
}
END_TEST

START_TEST (test_base_changed)
{
  struct dscow_super sb;
  char what[512];
  bool moved;
  make_super (&sb);
  sb.stamp = (struct dscow_base_stamp){ DSCOW_STAMP_FILE, 0x0801, 12,
                                        978307200000000000ull,
                                        978307200123456789ull };
  struct dscow_base_stamp now = sb.stamp;
  ck_assert_int_eq (
      dscow_base_changed (&sb, &now, base_id, what, sizeof what, &moved), 0);
  ck_assert_str_eq (what, "");
  ck_assert (!moved);
  now.dev = 0xfd03; /* device number alone: re-record */
  ck_assert_int_eq (
      dscow_base_changed (&sb, &now, base_id, what, sizeof what, &moved), 0);
  ck_assert (moved);
  now.ino = 13;
  now.mtime_ns += 1;
  ck_assert_int_eq (dscow_base_changed (&sb, &now, "naa.6001405fffff", what,
                                        sizeof what, &moved),
                    -DSCOW_EBASECHANGED);
  ck_assert_str_eq (what,
                    "inode 12 -> 13, modification time 2001-01-01 "
                    "00:00:00.000000000 UTC -> 2001-01-01 00:00:00.000000001 "
                    "UTC, identity naa.6001405abcdef -> naa.6001405fffff");
  ck_assert (!moved);
  now = sb.stamp;
  now.ctime_ns = 0;
  ck_assert_int_eq (
      dscow_base_changed (&sb, &now, base_id, what, sizeof what, &moved),
      -DSCOW_EBASECHANGED);
  ck_assert_str_eq (what, "change time 2001-01-01 00:00:00.123456789 UTC -> "
                          "1970-01-01 00:00:00.000000000 UTC");
  /* Nothing recorded (a LUN, a minor 0 superblock): identity only. */
  sb.stamp.kind = DSCOW_STAMP_NONE;
  ck_assert_int_eq (
      dscow_base_changed (&sb, &now, base_id, what, sizeof what, &moved), 0);
  ck_assert_str_eq (dscow_strerror (DSCOW_EBASECHANGED),
                    "the base file "
                    "changed after the volume was created (size, inode or "
                    "times differ)");
}
END_TEST

START_TEST (test_roundtrip_commit_policies)
{
  static const enum dscow_commit c[]
      = { DSCOW_COMMIT_SYNC, DSCOW_COMMIT_FLUSH, DSCOW_COMMIT_NONE };
  for (size_t i = 0; i < 3; i++)
    {
      struct dscow_super sb, out;
      ck_assert_int_eq (dscow_super_init (&sb, "v", uuid, 1 << 20, 4096,
                                          1 << 22, 1 << 20, "", c[i]),
                        0);
      ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
      ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
      ck_assert_uint_eq (out.commit, c[i]);
      ck_assert_str_eq (out.base_id, "");
    }
}
END_TEST

/* The byte offsets dscow(5) documents. */
START_TEST (test_layout_offsets)
{
  struct dscow_super sb;
  fill_every_field (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  ck_assert_int_eq (memcmp (buf, "DSCOW\0\r\n", 8), 0);
  ck_assert_uint_eq (get_le (buf, 8, 2), DSCOW_VERSION_MAJOR);
  ck_assert_uint_eq (get_le (buf, 10, 2), 7);
  ck_assert_uint_eq (get_le (buf, 12, 4), DSCOW_SUPER_SIZE);
  ck_assert_uint_eq (get_le (buf, 16, 8), sb.compat);
  ck_assert_uint_eq (get_le (buf, 24, 8), 0);
  ck_assert_uint_eq (get_le (buf, 32, 8), sb.ro_compat);
  ck_assert_mem_eq (buf + 40, sb.uuid, 16);
  ck_assert_mem_eq (buf + 56, sb.name, DSCOW_NAME_MAX);
  ck_assert_uint_eq (buf[56 + DSCOW_NAME_MAX], 0);
  ck_assert_uint_eq (get_le (buf, 120, 8), sb.volume_size);
  ck_assert_uint_eq (get_le (buf, 128, 4), sb.chunk_size);
  ck_assert_uint_eq (get_le (buf, 132, 4), sb.meta_chunks);
  ck_assert_uint_eq (get_le (buf, 136, 8), DSCOW_BITMAP_OFFSET);
  ck_assert_uint_eq (get_le (buf, 144, 8),
                     dscow_bitmap_bytes (sb.volume_size, sb.chunk_size));
  ck_assert_uint_eq (get_le (buf, 152, 8), sb.cow_size);
  ck_assert_uint_eq (get_le (buf, 160, 8), sb.base_size);
  ck_assert_mem_eq (buf + 168, sb.base_id, DSCOW_BASE_ID_MAX);
  ck_assert_uint_eq (buf[168 + DSCOW_BASE_ID_MAX], 0);
  ck_assert_uint_eq (get_le (buf, 264, 8), sb.epoch);
  ck_assert_uint_eq (get_le (buf, 272, 8), sb.generation);
  ck_assert_uint_eq (get_le (buf, 280, 4), sb.state);
  ck_assert_uint_eq (get_le (buf, 284, 4), sb.flags);
  ck_assert_uint_eq (get_le (buf, 288, 4), sb.commit);
  ck_assert_uint_eq (get_le (buf, 292, 4), sb.owner_node);
  ck_assert_uint_eq (get_le (buf, 296, 8), sb.create_time);
  for (size_t i = 304; i < 4092; i++)
    ck_assert_uint_eq (buf[i], 0); /* reserved */
  ck_assert_uint_eq (get_le (buf, 4092, 4), dscow_crc32c (0, buf, 4092));
}
END_TEST

/* Minor 3: the layer chain at 352-2503. */
static void
make_chain_super (struct dscow_super *sb)
{
  make_super (sb);
  sb->incompat = DSCOW_INCOMPAT_LOWER;
  sb->ro_compat = DSCOW_RO_COMPAT_FROZEN;
  for (int i = 0; i < 16; i++)
    {
      sb->lower_uuid[i] = (uint8_t) (0x10 + i);
      sb->upper_uuid[i] = (uint8_t) (0x80 + i);
    }
  memset (sb->lower_uri, 'l', DSCOW_URI_MAX); /* the longest there is */
  strcpy (sb->upper_uri, "iscsi://10.0.0.1/iqn.2026-11.test:t/3");
  strcpy (sb->snap_name, "before-upgrade_1.2");
  sb->snap_time = 0x0123456789abcdefull;
}

START_TEST (test_chain_fields)
{
  struct dscow_super sb, out;
  make_chain_super (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  ck_assert_uint_eq (get_le (buf, 24, 8), 1);
  ck_assert_uint_eq (get_le (buf, 32, 8), 1);
  ck_assert_mem_eq (buf + 352, sb.lower_uuid, 16);
  ck_assert_mem_eq (buf + 368, sb.upper_uuid, 16);
  ck_assert_uint_eq (get_le (buf, 384, 8), 0x0123456789abcdefull);
  ck_assert_mem_eq (buf + 392, "before-upgrade_1.2", 19);
  ck_assert_mem_eq (buf + 456, sb.lower_uri, DSCOW_URI_MAX);
  ck_assert_uint_eq (buf[456 + DSCOW_URI_MAX], 0);
  ck_assert_str_eq ((const char *) buf + 1480, sb.upper_uri);
  for (size_t i = 2504; i < 4092; i++)
    ck_assert_uint_eq (buf[i], 0); /* reserved */
  memset (&out, 0x55, sizeof out);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  ck_assert_mem_eq (out.lower_uuid, sb.lower_uuid, 16);
  ck_assert_mem_eq (out.upper_uuid, sb.upper_uuid, 16);
  ck_assert_str_eq (out.lower_uri, sb.lower_uri);
  ck_assert_str_eq (out.upper_uri, sb.upper_uri);
  ck_assert_str_eq (out.snap_name, sb.snap_name);
  ck_assert_uint_eq (out.snap_time, sb.snap_time);
  static uint8_t again[DSCOW_SUPER_SIZE];
  ck_assert_int_eq (dscow_super_encode (&out, again, sizeof again), 0);
  ck_assert_int_eq (memcmp (buf, again, DSCOW_SUPER_SIZE), 0);
}
END_TEST

/* Each link checked when its flag is set, and only then. */
static int
chain_decode_with (void (*edit) (struct dscow_super *))
{
  struct dscow_super sb, out;
  make_chain_super (&sb);
  edit (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  return dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out);
}

static void
ed_lower_uuid (struct dscow_super *sb)
{
  memset (sb->lower_uuid, 0, 16);
}
static void
ed_lower_uri (struct dscow_super *sb)
{
  sb->lower_uri[0] = 0;
}
static void
ed_upper_uuid (struct dscow_super *sb)
{
  memset (sb->upper_uuid, 0, 16);
}
static void
ed_upper_uri (struct dscow_super *sb)
{
  sb->upper_uri[0] = 0;
}
static void
ed_snap_name (struct dscow_super *sb)
{
  strcpy (sb->snap_name, "a b");
}
static void
ed_snap_empty (struct dscow_super *sb)
{
  sb->snap_name[0] = 0;
}
static void
ed_minor2 (struct dscow_super *sb)
{
  sb->version_minor = 2;
}
static void
ed_no_flags (struct dscow_super *sb)
{
  sb->incompat = sb->ro_compat = 0;
  memset (sb->lower_uuid, 0, 16); /* links not checked without flags */
  sb->upper_uri[0] = 0;
}

START_TEST (test_chain_errors)
{
  ck_assert_int_eq (chain_decode_with (ed_lower_uuid), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_lower_uri), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_upper_uuid), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_upper_uri), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_snap_name), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_snap_empty), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_minor2), -DSCOW_ECHAIN);
  ck_assert_int_eq (chain_decode_with (ed_no_flags), 0);
  /* A lower URI that fills its field with no NUL: refused. */
  struct dscow_super sb, out;
  make_chain_super (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  poke (buf, 456 + DSCOW_URI_MAX, 'l', 1);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_ECHAIN);
  /* A minor 2 superblock: bytes 352 on are not read (reserved then). */
  make_super (&sb);
  sb.version_minor = 2;
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  poke (buf, 456, 'x', 1);
  poke (buf, 384, 77, 8);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  ck_assert_str_eq (out.lower_uri, "");
  ck_assert_uint_eq (out.snap_time, 0);
  ck_assert_str_eq (dscow_strerror (DSCOW_ECHAIN),
                    "the superblock's layer "
                    "chain fields are inconsistent (a lower or upper layer "
                    "link without its device or uuid, or a frozen layer "
                    "without a snapshot name)");
}
END_TEST

START_TEST (test_init_defaults)
{
  struct dscow_super sb;
  make_super (&sb);
  ck_assert_uint_eq (sb.version_major, DSCOW_VERSION_MAJOR);
  ck_assert_uint_eq (sb.version_minor, DSCOW_VERSION_MINOR);
  ck_assert_uint_eq (sb.epoch, 0);
  ck_assert_uint_eq (sb.generation, 1);
  ck_assert_uint_eq (sb.state, DSCOW_STATE_CLEAN);
  ck_assert_uint_eq (sb.flags, 0);
  ck_assert_uint_eq (sb.owner_node, 0);
  ck_assert_uint_eq (sb.compat | sb.incompat | sb.ro_compat, 0);
  ck_assert_uint_eq (sb.meta_chunks, 1); /* 8K + 4K bitmap block */
  ck_assert_uint_ne (sb.create_time, 0);
  ck_assert_str_eq (sb.base_id, base_id);
}
END_TEST

/* --- errors --- */

START_TEST (test_decode_short_magic_csum)
{
  struct dscow_super sb, out;
  make_super (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE - 1),
                    -DSCOW_ESHORT);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  ck_assert_int_eq (dscow_super_decode (buf, 0, &out), -DSCOW_ESHORT);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE - 1, &out),
                    -DSCOW_ESHORT);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  /* One flipped byte anywhere covered by the checksum, or in it. */
  static const size_t at[] = { 8, 100, 280, 303, 304, 2000, 4091, 4092, 4095 };
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
    {
      buf[at[i]] ^= 0x20;
      ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                        -DSCOW_ECSUM);
      buf[at[i]] ^= 0x20;
    }
  /* The magic is checked before the checksum. */
  buf[0] = 'X';
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EMAGIC);
  poke (buf, 0, 'X', 1);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EMAGIC);
  memset (buf, 0, DSCOW_SUPER_SIZE);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EMAGIC);
}
END_TEST

START_TEST (test_decode_version_features)
{
  ck_assert_int_eq (decode_after_poke (8, 2, 2), -DSCOW_EVERSION);
  ck_assert_int_eq (decode_after_poke (8, 0, 2), -DSCOW_EVERSION);
  ck_assert_int_eq (decode_after_poke (8, 0xffff, 2), -DSCOW_EVERSION);
  ck_assert_int_eq (decode_after_poke (12, 512, 4), -DSCOW_EVERSION);
  ck_assert_int_eq (decode_after_poke (10, 9, 2), 0); /* minor: fine */
  ck_assert_int_eq (decode_after_poke (24, 4, 8), -DSCOW_EINCOMPAT);
  ck_assert_int_eq (decode_after_poke (24, 2, 8), 0); /* RESETTING */
  ck_assert_int_eq (decode_after_poke (24, 1ull << 63, 8), -DSCOW_EINCOMPAT);
  /* Known since minor 3: LOWER (and FROZEN) need their link. */
  ck_assert_int_eq (decode_after_poke (24, 1, 8), -DSCOW_ECHAIN);
  ck_assert_int_eq (decode_after_poke (32, 1, 8), -DSCOW_ECHAIN);
  ck_assert_int_eq (decode_after_poke (16, ~0ull, 8), 0); /* compat */
  ck_assert_int_eq (decode_after_poke (32, ~1ull, 8), 0); /* ro_compat */
}
END_TEST

START_TEST (test_decode_chunk_name_state)
{
  static const uint32_t bad_chunks[]
      = { 0, 512, 2048, 12288, 65535, 65537, 2u << 20, 0x80000000u };
  for (size_t i = 0; i < sizeof bad_chunks / sizeof bad_chunks[0]; i++)
    ck_assert_int_eq (decode_after_poke (128, bad_chunks[i], 4), -DSCOW_ECHUNK);
  ck_assert_int_eq (decode_after_poke (56, 0, 1), -DSCOW_ENAME); /* empty */
  ck_assert_int_eq (decode_after_poke (56, '.', 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (56, '-', 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (58, '/', 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (58, ' ', 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (58, 0xc3, 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (56, '_', 1), 0);
  ck_assert_int_eq (decode_after_poke (280, 0, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (280, 3, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (280, 0xffffffff, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (280, DSCOW_STATE_DIRTY, 4), 0);
  ck_assert_int_eq (decode_after_poke (288, 0, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (288, 4, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (288, DSCOW_COMMIT_NONE, 4), 0);
}
END_TEST

START_TEST (test_decode_geometry_size)
{
  ck_assert_int_eq (decode_after_poke (132, 5, 4), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (132, 0, 4), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (120, 0, 8), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (120, GIB + 1000, 8), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (120, GIB - 512, 8), 0); /* same meta */
  ck_assert_int_eq (decode_after_poke (144, 8192, 8), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (136, 4096, 8), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (152, 4096, 8), -DSCOW_ETOOSMALL);
  ck_assert_int_eq (
      decode_after_poke (152, dscow_cow_min_size (GIB, 65536) - 1, 8),
      -DSCOW_ETOOSMALL);
  ck_assert_int_eq (decode_after_poke (152, ~0ull, 8), 0);
}
END_TEST

/* When several fields are wrong, the first check in decode order wins. */
START_TEST (test_decode_order)
{
  struct dscow_super sb, out;
  make_super (&sb);
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  poke (buf, 152, 0, 8); /* too small */
  poke (buf, 132, 9, 4); /* geometry */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EGEOMETRY);
  poke (buf, 280, 0, 4); /* state */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_ESTATE);
  poke (buf, 56, 0, 1); /* name */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_ENAME);
  poke (buf, 128, 3, 4); /* chunk */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_ECHUNK);
  poke (buf, 24, 4, 8); /* incompat */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EINCOMPAT);
  poke (buf, 8, 2, 2); /* version */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EVERSION);
  buf[200] ^= 1; /* checksum */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_ECSUM);
  buf[1] = 'x'; /* magic */
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EMAGIC);
}
END_TEST

static int
init_with (const char *name, uint64_t vs, uint32_t cs, uint64_t cow,
           const char *id, enum dscow_commit c)
{
  struct dscow_super sb;
  return dscow_super_init (&sb, name, uuid, vs, cs, cow, vs, id, c);
}

START_TEST (test_init_errors)
{
  char n64[65], id96[97];
  memset (n64, 'n', 64);
  n64[64] = '\0';
  memset (id96, 'i', 96);
  id96[96] = '\0';
  ck_assert_int_eq (
      init_with ("v", 1 << 20, 3000, 1 << 22, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ECHUNK);
  ck_assert_int_eq (
      init_with ("v", 1 << 20, 2 << 20, 1 << 24, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ECHUNK);
  ck_assert_int_eq (
      init_with ("bad name", 1 << 20, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ENAME);
  ck_assert_int_eq (
      init_with ("", 1 << 20, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ENAME);
  ck_assert_int_eq (
      init_with (n64, 1 << 20, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ENAME);
  ck_assert_int_eq (
      init_with (n64 + 1, 1 << 20, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC), 0);
  ck_assert_int_eq (
      init_with (".hidden", 1 << 20, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ENAME);
  ck_assert_int_eq (init_with ("v", 1 << 20, 4096, 1 << 22, "x", 0),
                    -DSCOW_ESTATE);
  ck_assert_int_eq (init_with ("v", 1 << 20, 4096, 1 << 22, "x", 4),
                    -DSCOW_ESTATE);
  ck_assert_int_eq (
      init_with ("v", 1 << 20, 4096, 1 << 20, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_ETOOSMALL);
  ck_assert_int_eq (
      init_with ("v", 1000, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC),
      -DSCOW_EGEOMETRY);
  ck_assert_int_eq (init_with ("v", 0, 4096, 1 << 22, "x", DSCOW_COMMIT_SYNC),
                    -DSCOW_EGEOMETRY);
  ck_assert_int_eq (
      init_with ("v", 1 << 20, 4096, 1 << 22, id96, DSCOW_COMMIT_SYNC),
      -DSCOW_EGEOMETRY);
  ck_assert_int_eq (
      init_with ("v", 1 << 20, 4096, 1 << 22, id96 + 1, DSCOW_COMMIT_SYNC), 0);
}
END_TEST

/* --- slots --- */

static void
encode_gen (struct dscow_super *sb, uint64_t gen, unsigned slot)
{
  sb->generation = gen;
  ck_assert_int_eq (
      dscow_super_encode (sb, buf + slot * DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE),
      0);
}

static int
pick (uint64_t *gen, unsigned *slot)
{
  struct dscow_super out;
  *slot = 99;
  int r = dscow_super_pick (buf, sizeof buf, &out, slot);
  *gen = r == 0 ? out.generation : 0;
  return r;
}

START_TEST (test_pick_generation_order)
{
  struct dscow_super sb;
  uint64_t g;
  unsigned slot;
  make_super (&sb);
  encode_gen (&sb, 10, 0);
  encode_gen (&sb, 11, 1);
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 11);
  ck_assert_uint_eq (slot, 1);
  encode_gen (&sb, 12, 0);
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 12);
  ck_assert_uint_eq (slot, 0);
  encode_gen (&sb, 12, 1); /* equal: slot A */
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (slot, 0);
  encode_gen (&sb, 1ull << 40, 1); /* 64-bit compare */
  encode_gen (&sb, 0xffffffffull, 0);
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 1ull << 40);
  ck_assert_uint_eq (slot, 1);
  struct dscow_super out;
  ck_assert_int_eq (dscow_super_pick (buf, sizeof buf - 1, &out, &slot),
                    -DSCOW_ESHORT);
}
END_TEST

START_TEST (test_pick_torn)
{
  struct dscow_super sb;
  uint64_t g;
  unsigned slot;
  make_super (&sb);
  encode_gen (&sb, 10, 0);
  encode_gen (&sb, 11, 1);
  buf[DSCOW_SUPER_SIZE + 300] ^= 0xff; /* torn write of slot B */
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 10);
  ck_assert_uint_eq (slot, 0);
  encode_gen (&sb, 11, 1);
  memset (buf + 512, 0xaa, 512); /* torn write of slot A */
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 11);
  ck_assert_uint_eq (slot, 1);
  /* Neither valid: slot A's error. */
  memset (buf, 0, DSCOW_SUPER_SIZE);
  buf[DSCOW_SUPER_SIZE + 300] ^= 0xff;
  ck_assert_int_eq (pick (&g, &slot), -DSCOW_EMAGIC);
  encode_gen (&sb, 12, 0);
  buf[400] ^= 1;
  memset (buf + DSCOW_SUPER_SIZE, 0, DSCOW_SUPER_SIZE);
  ck_assert_int_eq (pick (&g, &slot), -DSCOW_ECSUM);
  /* A valid but unsupported slot A does not hide a good slot B. */
  encode_gen (&sb, 20, 0);
  poke (buf, 8, 2, 2);
  encode_gen (&sb, 19, 1);
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 19);
  ck_assert_uint_eq (slot, 1);
}
END_TEST

/* A new volume (generation 1 in its slot, B; slot A zeroes), then the
 * writes an agent makes, each to slot generation % 2: a torn write of the
 * newest always leaves the one before. */
START_TEST (test_pick_write_sequence)
{
  struct dscow_super sb;
  uint64_t g;
  unsigned slot;
  make_super (&sb);
  memset (buf, 0, sizeof buf);
  encode_gen (&sb, 1, dscow_super_slot (1));
  ck_assert_int_eq (pick (&g, &slot), 0);
  ck_assert_uint_eq (g, 1);
  ck_assert_uint_eq (slot, 1);
  for (uint64_t gen = 2; gen < 40; gen++)
    {
      unsigned s = dscow_super_slot (gen);
      ck_assert_uint_eq (s, gen % 2);
      encode_gen (&sb, gen, s);
      ck_assert_int_eq (pick (&g, &slot), 0);
      ck_assert_uint_eq (g, gen);
      ck_assert_uint_eq (slot, s);
      buf[s * DSCOW_SUPER_SIZE + 272] ^= 0x40; /* tear it */
      ck_assert_int_eq (pick (&g, &slot), 0);
      ck_assert_uint_eq (g, gen - 1);
      ck_assert_uint_eq (slot, 1 - s);
      buf[s * DSCOW_SUPER_SIZE + 272] ^= 0x40;
    }
  ck_assert_uint_eq (dscow_super_slot (0), 0);
  ck_assert_uint_eq (dscow_super_slot (1), 1);
  ck_assert_uint_eq (dscow_super_slot (UINT64_MAX), 1);
  ck_assert_uint_eq (dscow_super_slot (UINT64_MAX - 1), 0);
}
END_TEST

/* --- bitmap --- */

START_TEST (test_bit_order)
{
  uint8_t map[4] = { 0 };
  dscow_bit_set (map, 0);
  dscow_bit_set (map, 9);
  dscow_bit_set (map, 31);
  ck_assert_uint_eq (map[0], 0x01); /* LSB first */
  ck_assert_uint_eq (map[1], 0x02);
  ck_assert_uint_eq (map[3], 0x80);
  ck_assert (dscow_bit_test (map, 9) && !dscow_bit_test (map, 8));
  dscow_bit_set (map, 9); /* idempotent */
  ck_assert_uint_eq (map[1], 0x02);
  dscow_bit_clear (map, 9);
  dscow_bit_clear (map, 10); /* already clear */
  ck_assert_uint_eq (map[1], 0);
  ck_assert_uint_eq (map[0], 0x01);
  ck_assert_uint_eq (map[3], 0x80);
}
END_TEST

START_TEST (test_bitmap_count)
{
  uint8_t map[64] = { 0 };
  for (uint64_t b = 60; b < 200; b++)
    dscow_bit_set (map, b);
  dscow_bit_clear (map, 100);
  ck_assert_uint_eq (dscow_bitmap_count (map, 512), 139);
  ck_assert_uint_eq (dscow_bitmap_count (map, 0), 0);
  ck_assert_uint_eq (dscow_bitmap_count (map, 60), 0);
  ck_assert_uint_eq (dscow_bitmap_count (map, 61), 1);
  ck_assert_uint_eq (dscow_bitmap_count (map, 64), 4);
  ck_assert_uint_eq (dscow_bitmap_count (map, 70), 10);
  ck_assert_uint_eq (dscow_bitmap_count (map, 128), 67);
  ck_assert_uint_eq (dscow_bitmap_count (map, 199), 138);
  memset (map, 0xff, sizeof map); /* bits past nbits ignored */
  ck_assert_uint_eq (dscow_bitmap_count (map, 130), 130);
  ck_assert_uint_eq (dscow_bitmap_count (map, 512), 512);
}
END_TEST

START_TEST (test_bitmap_run)
{
  uint8_t map[64] = { 0 };
  for (uint64_t b = 60; b < 200; b++)
    dscow_bit_set (map, b);
  dscow_bit_clear (map, 100);
  ck_assert_uint_eq (dscow_bitmap_run (map, 0, 512), 60);
  ck_assert_uint_eq (dscow_bitmap_run (map, 60, 512), 40); /* 60..99 */
  ck_assert_uint_eq (dscow_bitmap_run (map, 100, 512), 1);
  ck_assert_uint_eq (dscow_bitmap_run (map, 101, 512), 99); /* 101..199 */
  ck_assert_uint_eq (dscow_bitmap_run (map, 64, 512), 36);
  ck_assert_uint_eq (dscow_bitmap_run (map, 128, 512), 72); /* aligned */
  ck_assert_uint_eq (dscow_bitmap_run (map, 199, 512), 1);
  ck_assert_uint_eq (dscow_bitmap_run (map, 200, 312), 312); /* to the end */
  ck_assert_uint_eq (dscow_bitmap_run (map, 256, 256), 256);
  ck_assert_uint_eq (dscow_bitmap_run (map, 511, 1), 1);
  /* max cuts a run in the bit-by-bit head, in a whole word, in the tail */
  ck_assert_uint_eq (dscow_bitmap_run (map, 0, 10), 10);
  ck_assert_uint_eq (dscow_bitmap_run (map, 130, 5), 5);
  ck_assert_uint_eq (dscow_bitmap_run (map, 101, 27), 27); /* to 128 */
  ck_assert_uint_eq (dscow_bitmap_run (map, 101, 30), 30);
  ck_assert_uint_eq (dscow_bitmap_run (map, 200, 64), 64);
  ck_assert_uint_eq (dscow_bitmap_run (map, 200, 65), 65);
  ck_assert_uint_eq (dscow_bitmap_run (map, 0, 0), 0);
  ck_assert_uint_eq (dscow_bitmap_run (map, 100, 0), 0);
  /* A run of ones over several whole words, ending mid-word. */
  memset (map, 0, sizeof map);
  for (uint64_t b = 63; b < 330; b++)
    dscow_bit_set (map, b);
  ck_assert_uint_eq (dscow_bitmap_run (map, 63, 512), 267);
  ck_assert_uint_eq (dscow_bitmap_run (map, 64, 512), 266);
  ck_assert_uint_eq (dscow_bitmap_run (map, 64, 256), 256);
  ck_assert_uint_eq (dscow_bitmap_run (map, 330, 182), 182);
  ck_assert_uint_eq (dscow_bitmap_run (map, 0, 512), 63);
  ck_assert (dscow_bit_test (map, 63) && !dscow_bit_test (map, 330));
}
END_TEST

static uint64_t
xorshift (uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static uint64_t
naive_run (const uint8_t *map, uint64_t start, uint64_t max)
{
  uint64_t n = 0;
  while (n < max
         && dscow_bit_test (map, start + n) == dscow_bit_test (map, start))
    n++;
  return n;
}

static uint64_t
naive_count (const uint8_t *map, uint64_t nbits)
{
  uint64_t n = 0;
  for (uint64_t b = 0; b < nbits; b++)
    n += dscow_bit_test (map, b);
  return n;
}

/* Random bitmaps made of runs of random length, scanned every way. */
START_TEST (test_bitmap_random)
{
  enum
  {
    NBITS = 2048
  };
  static uint8_t map[NBITS / 8];
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int round = 0; round < 20; round++)
    {
      memset (map, 0, sizeof map);
      bool v = round & 1;
      for (uint64_t b = 0; b < NBITS;)
        {
          uint64_t len = 1 + xorshift (&seed) % (round < 10 ? 200 : 8);
          for (uint64_t i = 0; i < len && b < NBITS; i++, b++)
            if (v)
              dscow_bit_set (map, b);
          v = !v;
        }
      for (int k = 0; k < 400; k++)
        {
          uint64_t start = xorshift (&seed) % NBITS;
          uint64_t max = xorshift (&seed) % (NBITS - start + 1);
          ck_assert_uint_eq (dscow_bitmap_run (map, start, max),
                             naive_run (map, start, max));
          uint64_t nbits = xorshift (&seed) % (NBITS + 1);
          ck_assert_uint_eq (dscow_bitmap_count (map, nbits),
                             naive_count (map, nbits));
        }
    }
}
END_TEST

/* --- geometry and devices --- */

START_TEST (test_geometry)
{
  struct dscow_super sb;
  make_super (&sb);
  ck_assert_uint_eq (dscow_nr_chunks (1000, 4096), 1);
  ck_assert_uint_eq (dscow_nr_chunks (4096, 4096), 1);
  ck_assert_uint_eq (dscow_nr_chunks (4097, 4096), 2);
  ck_assert_uint_eq (dscow_nr_chunks (GIB, 65536), 16384);
  ck_assert_uint_eq (dscow_bitmap_bytes (512, 4096), 4096);
  ck_assert_uint_eq (dscow_bitmap_bytes (GIB, 65536), 4096);
  ck_assert_uint_eq (dscow_bitmap_bytes (GIB, 4096), 32768);
  ck_assert_uint_eq (dscow_bitmap_bytes (4096ull * 8 * 4096 + 4096, 4096),
                     8192);
  ck_assert_uint_eq (dscow_meta_chunks (1000, 4096), 3);
  ck_assert_uint_eq (dscow_meta_chunks (GIB, 65536), 1);
  ck_assert_uint_eq (dscow_meta_chunks (GIB, 4096), 10);
  ck_assert_uint_eq (dscow_meta_chunks (1024 * GIB, 4096), 8194);
  ck_assert_uint_eq (dscow_meta_chunks (1024 * GIB, 1 << 20), 1);
  ck_assert_uint_eq (dscow_meta_chunks (16384 * GIB, 65536), 513);
  ck_assert_uint_eq (dscow_cow_min_size (1000, 4096), 4 * 4096);
  ck_assert_uint_eq (dscow_cow_min_size (GIB, 65536), GIB + 65536);
  ck_assert_uint_eq (dscow_cow_min_size (GIB, 4096), GIB + 10 * 4096);
  ck_assert_uint_eq (dscow_cow_min_size (1024 * GIB, 4096),
                     1024 * GIB + 8194ull * 4096);
  ck_assert_uint_eq (dscow_chunk_offset (&sb, 0), 65536);
  ck_assert_uint_eq (dscow_chunk_offset (&sb, 5), 6 * 65536);
  ck_assert_uint_eq (dscow_chunk_offset (&sb, 16383) + 65536,
                     dscow_cow_min_size (GIB, 65536));
  for (unsigned shift = 0; shift < 32; shift++)
    {
      uint32_t cs = 1u << shift;
      ck_assert (dscow_chunk_size_valid (cs) == (shift >= 12 && shift <= 20));
      ck_assert (!dscow_chunk_size_valid (cs + (cs >> 1)));
    }
  ck_assert (!dscow_chunk_size_valid (0));
  ck_assert_uint_eq (DSCOW_CHUNK_DEFAULT, 65536);
}
END_TEST

START_TEST (test_check_devices)
{
  struct dscow_super sb;
  make_super (&sb);
  uint64_t cow = sb.cow_size, base = sb.base_size;
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base, base_id), 0);
  ck_assert_int_eq (dscow_check_devices (&sb, cow + 4096, base, base_id), 0);
  ck_assert_int_eq (dscow_check_devices (&sb, cow - 1, base, base_id),
                    -DSCOW_ETOOSMALL);
  ck_assert_int_eq (dscow_check_devices (&sb, 0, base, base_id),
                    -DSCOW_ETOOSMALL);
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base, "naa.other"),
                    -DSCOW_EBASEMISMATCH);
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base, "naa.6001405abcde"),
                    -DSCOW_EBASEMISMATCH);
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base, ""),
                    -DSCOW_EBASEMISMATCH);
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base - 512, base_id),
                    -DSCOW_EBASEMISMATCH);
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base + 512, base_id),
                    -DSCOW_EBASEMISMATCH);
  sb.base_size = base + 512; /* superblock disagrees */
  ck_assert_int_eq (dscow_check_devices (&sb, cow, base + 512, base_id),
                    -DSCOW_EBASEMISMATCH);
}
END_TEST

START_TEST (test_strerror)
{
  for (int e = 0; e < DSCOW_ERR_MAX; e++)
    {
      const char *s = dscow_strerror (-e);
      ck_assert_ptr_nonnull (s);
      ck_assert_uint_gt (strlen (s), 0);
      ck_assert_int_ne (s[strlen (s) - 1], '.');
      ck_assert_ptr_eq (s, dscow_strerror (e));
      ck_assert_str_ne (s, dscow_strerror (DSCOW_ERR_MAX));
      for (int f = 0; f < e; f++)
        ck_assert_str_ne (s, dscow_strerror (f));
    }
  ck_assert_ptr_nonnull (dscow_strerror (DSCOW_ERR_MAX));
  ck_assert_ptr_nonnull (dscow_strerror (999));
  ck_assert_ptr_nonnull (dscow_strerror (-999));
}
END_TEST

START_TEST (test_uuid_format)
{
  char u[37];
  dscow_uuid_format (uuid, u);
  ck_assert_str_eq (u, "01020304-0506-0708-090a-0b0c0d0e0f10");
  static const uint8_t ff[16]
      = { 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
          0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00 };
  dscow_uuid_format (ff, u);
  ck_assert_str_eq (u, "ffeeddcc-bbaa-9988-7766-554433221100");
}
END_TEST

static Suite *
format_suite (void)
{
  Suite *s = suite_create ("format");
  TCase *tc = tcase_create ("crc32c");
  tcase_add_test (tc, test_crc32c_vectors);
  tcase_add_test (tc, test_crc32c_chaining);
  suite_add_tcase (s, tc);
  tc = tcase_create ("super");
  tcase_add_test (tc, test_roundtrip_every_field);
  tcase_add_test (tc, test_roundtrip_commit_policies);
  tcase_add_test (tc, test_layout_offsets);
  tcase_add_test (tc, test_init_defaults);
  tcase_add_test (tc, test_chain_fields);
  tcase_add_test (tc, test_chain_errors);
  tcase_add_test (tc, test_decode_short_magic_csum);
  tcase_add_test (tc, test_decode_version_features);
  tcase_add_test (tc, test_decode_chunk_name_state);
  tcase_add_test (tc, test_decode_geometry_size);
  tcase_add_test (tc, test_decode_order);
  tcase_add_test (tc, test_init_errors);
  suite_add_tcase (s, tc);
  tc = tcase_create ("slots");
  tcase_add_test (tc, test_pick_generation_order);
  tcase_add_test (tc, test_pick_torn);
  tcase_add_test (tc, test_pick_write_sequence);
  suite_add_tcase (s, tc);
  tc = tcase_create ("bitmap");
  tcase_add_test (tc, test_bit_order);
  tcase_add_test (tc, test_bitmap_count);
  tcase_add_test (tc, test_bitmap_run);
  tcase_add_test (tc, test_bitmap_random);
  suite_add_tcase (s, tc);
  tc = tcase_create ("misc");
  tcase_add_test (tc, test_geometry);
  tcase_add_test (tc, test_check_devices);
  tcase_add_test (tc, test_strerror);
  tcase_add_test (tc, test_uuid_format);
  tcase_add_test (tc, test_base_stamp);
  tcase_add_test (tc, test_base_changed);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (format_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
