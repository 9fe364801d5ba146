/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Private to libdscow: the superblock's field offsets.  Fields are read
 * and written with common/byteorder.h. */
#ifndef DSCOW_INT_H
#define DSCOW_INT_H

#include <stdint.h>

#include "byteorder.h"

/* Byte offsets of the superblock fields; see dscow(5). */
enum
{
  SB_MAGIC = 0,
  SB_MAJOR = 8,
  SB_MINOR = 10,
  SB_HEADER_SIZE = 12,
  SB_COMPAT = 16,
  SB_INCOMPAT = 24,
  SB_RO_COMPAT = 32,
  SB_UUID = 40,
  SB_NAME = 56,
  SB_VOLUME_SIZE = 120,
  SB_CHUNK_SIZE = 128,
  SB_META_CHUNKS = 132,
  SB_BITMAP_OFFSET = 136,
  SB_BITMAP_BYTES = 144,
  SB_COW_SIZE = 152,
  SB_BASE_SIZE = 160,
  SB_BASE_ID = 168,
  SB_EPOCH = 264,
  SB_GENERATION = 272,
  SB_STATE = 280,
  SB_FLAGS = 284,
  SB_COMMIT = 288,
  SB_OWNER_NODE = 292,
  SB_CREATE_TIME = 296,
  /* minor 1: the base file's stamp */
  SB_BASE_STAMP = 304,
  SB_BASE_DEV = 312,
  SB_BASE_INO = 320,
  SB_BASE_MTIME = 328,
  SB_BASE_CTIME = 336,
  SB_HYDRATE_RATE = 344, /* minor 2 */
  /* minor 3: the layer chain */
  SB_LOWER_UUID = 352,
  SB_UPPER_UUID = 368,
  SB_SNAP_TIME = 384,
  SB_SNAP_NAME = 392,
  SB_LOWER_URI = 456,
  SB_UPPER_URI = 1480, /* ends at 2504 */
  SB_CRC = 4092,
};

#define SB_NAME_FIELD 64
#define SB_BASE_ID_FIELD 96
#define SB_URI_FIELD 1024

#endif
