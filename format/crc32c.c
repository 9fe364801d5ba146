/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* crc32c.c: libdscow's exported CRC-32C, the one of common/crc32c.h
 * (shared with the cluster messages). */
#include <config.h>

#include "crc32c.h"
#include "dscow.h"

uint32_t
dscow_crc32c (uint32_t crc, const void *buf, size_t len)
{
  return crc32c (crc, buf, len);
}
