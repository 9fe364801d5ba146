/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz_super.c: a libFuzzer target for libdscow's superblock decoder.
 *
 * The superblock is the one structure cowd reads from a device it does
 * not control, so dscow_super_decode and dscow_super_pick must accept any
 * bytes: never read past the buffer, never crash, and when they do accept
 * a superblock it must satisfy every rule dscow(5) states.  The target
 * checks, for each input:
 *
 *   - decode of the input as one slot (any length, short inputs included);
 *   - when it succeeds: the fields are in range, and encode -> decode gives
 *     back the same superblock and the same bytes (a fixed point);
 *   - pick over the input as two slots (padded with zeroes or cut to
 *     8192 bytes): the result is one of the valid slots, with the higher
 *     generation, and when neither is valid it is slot A's error.
 *
 * Built and run by tests/fuzz/fuzz.sh (10 s in make check when clang has
 * libFuzzer), from the seeds in tests/fuzz/corpus/super: superblock and
 * bitmap of CoW devices the engine formatted.  A crash leaves its input
 * in tests/fuzz/crash-super/; run tests/fuzz/bin/fuzz_super FILE to replay.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dscow.h"
#include "fuzz.h"

static void
fuzz_check_fields (const struct dscow_super *sb)
{
  FUZZ_CHECK (sb->version_major == DSCOW_VERSION_MAJOR);
  FUZZ_CHECK ((sb->incompat & ~DSCOW_INCOMPAT_SUPPORTED) == 0);
  FUZZ_CHECK (dscow_chunk_size_valid (sb->chunk_size));
  FUZZ_CHECK (sb->name[0] != '\0' && strlen (sb->name) <= DSCOW_NAME_MAX);
  FUZZ_CHECK (strlen (sb->base_id) <= DSCOW_BASE_ID_MAX);
  FUZZ_CHECK (sb->state == DSCOW_STATE_CLEAN || sb->state == DSCOW_STATE_DIRTY);
  FUZZ_CHECK (sb->commit >= DSCOW_COMMIT_SYNC
              && sb->commit <= DSCOW_COMMIT_NONE);
  FUZZ_CHECK (sb->volume_size > 0 && sb->volume_size % 512 == 0);
  FUZZ_CHECK (sb->meta_chunks
              == dscow_meta_chunks (sb->volume_size, sb->chunk_size));
  FUZZ_CHECK (sb->cow_size
              >= dscow_cow_min_size (sb->volume_size, sb->chunk_size));
}

/* Field by field: padding and the bytes after a string's NUL may differ. */
static int
fuzz_super_cmp (const struct dscow_super *x, const struct dscow_super *y)
{
  return x->version_major != y->version_major
         || x->version_minor != y->version_minor || x->compat != y->compat
         || x->incompat != y->incompat || x->ro_compat != y->ro_compat
         || memcmp (x->uuid, y->uuid, 16) != 0 || strcmp (x->name, y->name) != 0
         || x->volume_size != y->volume_size || x->chunk_size != y->chunk_size
         || x->meta_chunks != y->meta_chunks || x->cow_size != y->cow_size
         || x->base_size != y->base_size || strcmp (x->base_id, y->base_id) != 0
         || x->epoch != y->epoch || x->generation != y->generation
         || x->state != y->state || x->flags != y->flags
         || x->commit != y->commit || x->owner_node != y->owner_node
         || x->create_time != y->create_time;
}

/* A decoded superblock re-encodes to a buffer that decodes to itself. */
static void
fuzz_check_fixed_point (const struct dscow_super *sb)
{
  static uint8_t a[DSCOW_SUPER_SIZE], b[DSCOW_SUPER_SIZE];
  struct dscow_super again;
  FUZZ_CHECK (dscow_super_encode (sb, a, sizeof a) == 0);
  FUZZ_CHECK (dscow_super_decode (a, sizeof a, &again) == 0);
  FUZZ_CHECK (fuzz_super_cmp (sb, &again) == 0);
  FUZZ_CHECK (dscow_super_encode (&again, b, sizeof b) == 0);
  FUZZ_CHECK (memcmp (a, b, sizeof a) == 0);
}

static void
fuzz_one_slot (const uint8_t *data, size_t size)
{
  struct dscow_super sb;
  memset (&sb, 0, sizeof sb);
  int r = dscow_super_decode (data, size, &sb);
  FUZZ_CHECK (r <= 0 && r > -DSCOW_ERR_MAX);
  FUZZ_CHECK (dscow_strerror (r) != NULL);
  if (size < DSCOW_SUPER_SIZE)
    FUZZ_CHECK (r == -DSCOW_ESHORT);
  if (r == 0)
    {
      fuzz_check_fields (&sb);
      fuzz_check_fixed_point (&sb);
    }
}

static void
fuzz_two_slots (const uint8_t *data, size_t size)
{
  static uint8_t two[DSCOW_SUPER_SLOTS * DSCOW_SUPER_SIZE];
  struct dscow_super sb, a, b;
  unsigned slot = 7;
  size_t n = size < sizeof two ? size : sizeof two;
  memset (two, 0, sizeof two);
  memcpy (two, data, n);
  int r = dscow_super_pick (two, sizeof two, &sb, &slot);
  int ra = dscow_super_decode (two, DSCOW_SUPER_SIZE, &a);
  int rb = dscow_super_decode (two + DSCOW_SUPER_SIZE, DSCOW_SUPER_SIZE, &b);
  if (ra < 0 && rb < 0)
    {
      FUZZ_CHECK (r == ra);
      return;
    }
  FUZZ_CHECK (r == 0 && slot < DSCOW_SUPER_SLOTS);
  const struct dscow_super *want = slot == 0 ? &a : &b;
  FUZZ_CHECK ((slot == 0 ? ra : rb) == 0);
  FUZZ_CHECK (fuzz_super_cmp (&sb, want) == 0);
  if (ra == 0 && rb == 0)
    FUZZ_CHECK (slot == 0 ? a.generation >= b.generation
                          : b.generation > a.generation);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_one_slot (data, size);
  fuzz_two_slots (data, size);
  return 0;
}
