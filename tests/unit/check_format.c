/* check_format.c: libdscow's encode/decode, checks, slot choice, geometry,
 * bitmap scans and crc32c, including every error a device can give. */
#include <config.h>

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dscow.h"

static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
  14, 15, 16 };
static uint8_t buf[2 * DSCOW_SUPER_SIZE];

static void
make_super (struct dscow_super *sb)
{
  uint64_t vs = 1024ull * 1024 * 1024;
  ck_assert_int_eq (dscow_super_init (sb, "vm-1.disk_0", uuid, vs, 65536,
                                      dscow_cow_min_size (vs, 65536), vs,
                                      "naa.6001405abcdef", DSCOW_COMMIT_SYNC),
                    0);
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

static int
decode_after_poke (size_t off, uint64_t v, int width)
{
  struct dscow_super sb, out;
  make_super (&sb);
  dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE);
  poke (buf, off, v, width);
  return dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out);
}

START_TEST (test_crc32c)
{
  ck_assert_uint_eq (dscow_crc32c (0, "123456789", 9), 0xE3069283u);
  uint32_t a = dscow_crc32c (0, "1234", 4);
  ck_assert_uint_eq (dscow_crc32c (a, "56789", 5), 0xE3069283u);
  ck_assert_uint_eq (dscow_crc32c (0, "", 0), 0);
}
END_TEST

START_TEST (test_roundtrip)
{
  struct dscow_super sb, out;
  make_super (&sb);
  sb.epoch = 77;
  sb.generation = 1234567;
  sb.state = DSCOW_STATE_DIRTY;
  sb.flags = DSCOW_FLAG_HYDRATED;
  sb.owner_node = 3;
  sb.compat = 0x10;
  ck_assert_int_eq (dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE), 0);
  ck_assert_int_eq (memcmp (buf, DSCOW_MAGIC, 8), 0);
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out), 0);
  ck_assert_int_eq (memcmp (&sb, &out, sizeof sb), 0);
  ck_assert_uint_eq (out.meta_chunks, 1);    /* 8K + 2K bitmap -> 4K block */
  ck_assert_str_eq (out.base_id, "naa.6001405abcdef");
}
END_TEST

START_TEST (test_errors)
{
  struct dscow_super sb, out;
  make_super (&sb);
  dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE);
  ck_assert_int_eq (dscow_super_decode (buf, 100, &out), -DSCOW_ESHORT);
  buf[100] ^= 1;
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_ECSUM);
  buf[0] = 'X';
  ck_assert_int_eq (dscow_super_decode (buf, DSCOW_SUPER_SIZE, &out),
                    -DSCOW_EMAGIC);
  ck_assert_int_eq (decode_after_poke (8, 2, 2), -DSCOW_EVERSION);
  ck_assert_int_eq (decode_after_poke (10, 9, 2), 0);   /* minor: fine */
  ck_assert_int_eq (decode_after_poke (24, 1ull << 40, 8), -DSCOW_EINCOMPAT);
  ck_assert_int_eq (decode_after_poke (16, 1ull << 40, 8), 0);  /* compat */
  ck_assert_int_eq (decode_after_poke (128, 12345, 4), -DSCOW_ECHUNK);
  ck_assert_int_eq (decode_after_poke (56, '.', 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (56, 0, 1), -DSCOW_ENAME);
  ck_assert_int_eq (decode_after_poke (280, 9, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (288, 0, 4), -DSCOW_ESTATE);
  ck_assert_int_eq (decode_after_poke (132, 5, 4), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (144, 8192, 8), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (120, 1000, 8), -DSCOW_EGEOMETRY);
  ck_assert_int_eq (decode_after_poke (152, 4096, 8), -DSCOW_ETOOSMALL);
}
END_TEST

START_TEST (test_init_errors)
{
  struct dscow_super sb;
  ck_assert_int_eq (dscow_super_init (&sb, "v", uuid, 1 << 20, 3000, 1 << 22,
                                      1 << 20, "x", DSCOW_COMMIT_SYNC),
                    -DSCOW_ECHUNK);
  ck_assert_int_eq (dscow_super_init (&sb, "bad name", uuid, 1 << 20, 4096,
                                      1 << 22, 1 << 20, "x",
                                      DSCOW_COMMIT_SYNC), -DSCOW_ENAME);
  ck_assert_int_eq (dscow_super_init (&sb, "v", uuid, 1 << 20, 4096,
                                      1 << 20, 1 << 20, "x",
                                      DSCOW_COMMIT_SYNC), -DSCOW_ETOOSMALL);
  ck_assert_int_eq (dscow_super_init (&sb, "v", uuid, 1000, 4096, 1 << 22,
                                      1000, "x", DSCOW_COMMIT_SYNC),
                    -DSCOW_EGEOMETRY);
}
END_TEST

START_TEST (test_pick)
{
  struct dscow_super sb, out;
  unsigned slot;
  make_super (&sb);
  sb.generation = 10;
  dscow_super_encode (&sb, buf, DSCOW_SUPER_SIZE);
  sb.generation = 11;
  dscow_super_encode (&sb, buf + DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE);
  ck_assert_int_eq (dscow_super_pick (buf, sizeof buf, &out, &slot), 0);
  ck_assert_uint_eq (out.generation, 11);
  ck_assert_uint_eq (slot, 1);
  buf[DSCOW_SUPER_SIZE + 300] ^= 0xff;         /* torn write of slot B */
  ck_assert_int_eq (dscow_super_pick (buf, sizeof buf, &out, &slot), 0);
  ck_assert_uint_eq (out.generation, 10);
  ck_assert_uint_eq (slot, 0);
  memset (buf, 0, DSCOW_SUPER_SIZE);           /* slot A gone as well */
  ck_assert_int_eq (dscow_super_pick (buf, sizeof buf, &out, &slot),
                    -DSCOW_EMAGIC);
  ck_assert_uint_eq (dscow_super_slot (10), 0);
  ck_assert_uint_eq (dscow_super_slot (11), 1);
}
END_TEST

START_TEST (test_geometry_and_devices)
{
  struct dscow_super sb;
  make_super (&sb);
  ck_assert_uint_eq (dscow_nr_chunks (1000, 4096), 1);
  ck_assert_uint_eq (dscow_bitmap_bytes (1ull << 30, 4096), 32768);
  ck_assert_uint_eq (dscow_meta_chunks (1ull << 30, 4096), 10);
  ck_assert_uint_eq (dscow_cow_min_size (1ull << 30, 65536),
                     (1ull << 30) + 65536);
  ck_assert_uint_eq (dscow_chunk_offset (&sb, 5), 6 * 65536);
  ck_assert_int_eq (dscow_check_devices (&sb, sb.cow_size, sb.base_size,
                                         sb.base_id), 0);
  ck_assert_int_eq (dscow_check_devices (&sb, sb.cow_size - 1, sb.base_size,
                                         sb.base_id), -DSCOW_ETOOSMALL);
  ck_assert_int_eq (dscow_check_devices (&sb, sb.cow_size, sb.base_size,
                                         "naa.other"), -DSCOW_EBASEMISMATCH);
  ck_assert_int_eq (dscow_check_devices (&sb, sb.cow_size, sb.base_size - 512,
                                         sb.base_id), -DSCOW_EBASEMISMATCH);
  ck_assert (dscow_chunk_size_valid (4096) && dscow_chunk_size_valid (1 << 20));
  ck_assert (!dscow_chunk_size_valid (2048) && !dscow_chunk_size_valid (1 << 21)
             && !dscow_chunk_size_valid (12288));
}
END_TEST

START_TEST (test_bitmap)
{
  uint8_t map[64] = { 0 };
  for (uint64_t b = 60; b < 200; b++)
    dscow_bit_set (map, b);
  dscow_bit_clear (map, 100);
  ck_assert_uint_eq (dscow_bitmap_count (map, 512), 139);
  ck_assert_uint_eq (dscow_bitmap_count (map, 70), 10);
  ck_assert_uint_eq (dscow_bitmap_run (map, 0, 512), 60);
  ck_assert_uint_eq (dscow_bitmap_run (map, 60, 512), 40);
  ck_assert_uint_eq (dscow_bitmap_run (map, 100, 512), 1);
  ck_assert_uint_eq (dscow_bitmap_run (map, 101, 512), 99);
  ck_assert_uint_eq (dscow_bitmap_run (map, 200, 312), 312);
  ck_assert_uint_eq (dscow_bitmap_run (map, 0, 10), 10);
  ck_assert_uint_eq (dscow_bitmap_run (map, 130, 5), 5);
  ck_assert (dscow_bit_test (map, 63) && !dscow_bit_test (map, 100));
}
END_TEST

START_TEST (test_strerror)
{
  for (int e = 0; e < DSCOW_ERR_MAX; e++)
    {
      const char *s = dscow_strerror (-e);
      ck_assert_ptr_nonnull (s);
      ck_assert (s[strlen (s) - 1] != '.');
      for (int f = 0; f < e; f++)
        ck_assert_str_ne (s, dscow_strerror (f));
    }
  ck_assert_ptr_nonnull (dscow_strerror (999));
  char u[37];
  dscow_uuid_format (uuid, u);
  ck_assert_str_eq (u, "01020304-0506-0708-090a-0b0c0d0e0f10");
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("format");
  TCase *tc = tcase_create ("all");
  tcase_add_test (tc, test_crc32c);
  tcase_add_test (tc, test_roundtrip);
  tcase_add_test (tc, test_errors);
  tcase_add_test (tc, test_init_errors);
  tcase_add_test (tc, test_pick);
  tcase_add_test (tc, test_geometry_and_devices);
  tcase_add_test (tc, test_bitmap);
  tcase_add_test (tc, test_strerror);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
