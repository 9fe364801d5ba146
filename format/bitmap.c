/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bitmap.c: counting and run-length scans over an in-memory bitmap (one
 * bit per chunk, LSB first within each byte).  Word at a time: these run
 * over bitmaps of millions of bits on every status and block-status. */
#include <config.h>

#include <string.h>

#include "dscow.h"

static uint64_t
load64 (const uint8_t *map, uint64_t word)
{
  uint64_t w;
  memcpy (&w, map + word * 8, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64 (w);
#endif
  return w;
}

uint64_t
dscow_bitmap_count (const uint8_t *map, uint64_t nbits)
{
  uint64_t n = 0, words = nbits / 64;
  for (uint64_t i = 0; i < words; i++)
    n += (uint64_t) __builtin_popcountll (load64 (map, i));
  for (uint64_t b = words * 64; b < nbits; b++)
    n += dscow_bit_test (map, b);
  return n;
}

uint64_t
dscow_bitmap_run (const uint8_t *map, uint64_t start, uint64_t max)
{
  if (max == 0)
    return 0;
  bool v = dscow_bit_test (map, start);
  uint64_t pos = start, end = start + max;
  /* Up to a word boundary bit by bit, then whole words, then the tail. */
  while (pos < end && (pos & 63) && dscow_bit_test (map, pos) == v)
    pos++;
  if (pos < end && (pos & 63))
    return pos - start;
  while (pos + 64 <= end)
    {
      uint64_t w = load64 (map, pos / 64);
      if (v)
        w = ~w;
      if (w)
        return pos + (uint64_t) __builtin_ctzll (w) - start;
      pos += 64;
    }
  while (pos < end && dscow_bit_test (map, pos) == v)
    pos++;
  return pos - start;
}
