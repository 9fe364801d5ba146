/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/crc32c.h: CRC-32C (Castagnoli), reflected polynomial 0x82F63B78,
 * as iSCSI and ext4 use it; header only, so every room has the one copy
 * (libdscow's dscow_crc32c and the cluster messages).  Slicing-by-8
 * tables, built once per program part that includes this (pthread_once).
 * Chain with crc = crc32c (crc, buf, len) starting from 0.
 */
#ifndef COWHERD_CRC32C_H
#define COWHERD_CRC32C_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void
crc32c_init (void)
{
  for (uint32_t i = 0; i < 256; i++)
    {
      uint32_t c = i;
      for (int k = 0; k < 8; k++)
        c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
      crc32c_table[0][i] = c;
    }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8)
                           ^ crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
}

static inline uint32_t
crc32c (uint32_t crc, const void *buf, size_t len)
{
  const uint8_t *p = buf;
  uint32_t (*T)[256] = crc32c_table;
  pthread_once (&crc32c_once, crc32c_init);
  crc = ~crc;
  while (len >= 8)
    {
      uint32_t lo = crc
                    ^ ((uint32_t) p[0] | (uint32_t) p[1] << 8
                       | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24);
      crc = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff]
            ^ T[4][lo >> 24] ^ T[3][p[4]] ^ T[2][p[5]] ^ T[1][p[6]]
            ^ T[0][p[7]];
      p += 8;
      len -= 8;
    }
  while (len--)
    crc = T[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#endif /* COWHERD_CRC32C_H */
