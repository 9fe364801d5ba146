/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* crc32c.c: CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as
 * iSCSI and ext4 use it.  Slicing-by-8 tables, built once.  The caller
 * chains with crc = dscow_crc32c (crc, buf, len) starting from 0. */
#include <config.h>

#include <pthread.h>

#include "dscow.h"

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void
crc32c_init (void)
{
  for (uint32_t i = 0; i < 256; i++)
    {
      uint32_t c = i;
      for (int k = 0; k < 8; k++)
        c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
      table[0][i] = c;
    }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t
dscow_crc32c (uint32_t crc, const void *buf, size_t len)
{
  const uint8_t *p = buf;
  pthread_once (&table_once, crc32c_init);
  crc = ~crc;
  while (len >= 8)
    {
      uint32_t lo = crc ^ ((uint32_t) p[0] | (uint32_t) p[1] << 8
                           | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24);
      crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff]
        ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24]
        ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
      p += 8;
      len -= 8;
    }
  while (len--)
    crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}
