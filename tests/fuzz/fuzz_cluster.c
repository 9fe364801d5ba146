/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz_cluster.c: a libFuzzer target for the cluster messages (cluster/
 * msg.c) and the ownership table they drive (cluster/table.c).
 *
 * Every message comes off the corosync group from another agent, so
 * cl_msg_decode must take any bytes and cl_table_apply any sequence of
 * decoded messages from any sender.  An input is a series of frames:
 *
 *   u8 sender (bit 7: that node leaves the membership instead; bit 6:
 *   and is down), u16 length (little-endian), that many message bytes
 *
 * applied in order to one table, with node 1 as the local node.  For each
 * message that decodes, encode -> decode must succeed and give back the
 * same bytes (the codec is a fixed point).  Build and run: see
 * tests/fuzz/fuzz.sh.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-int.h"
#include "fuzz.h"

static void
fuzz_roundtrip (const struct cl_msg *m)
{
  size_t len, len2;
  struct cl_msg m2;
  void *buf = cl_msg_encode (m, &len);
  if (!buf)
    return;
  FUZZ_CHECK (cl_msg_decode (buf, len, &m2) == 0);
  void *buf2 = cl_msg_encode (&m2, &len2);
  FUZZ_CHECK (buf2 && len2 == len && memcmp (buf, buf2, len) == 0);
  cl_msg_free (&m2);
  free (buf);
  free (buf2);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const struct cluster_callbacks cb = { 0 };
  const struct cl_effects fx = { .cb = &cb, .local = 1 };
  struct cl_table t = { 0 };
  size_t pos = 0;
  while (size - pos >= 3)
    {
      uint8_t sender = data[pos];
      size_t len = (size_t) data[pos + 1] | (size_t) data[pos + 2] << 8;
      pos += 3;
      if (len > size - pos)
        len = size - pos;
      if (sender & 0x80)
        cl_table_member_left (&t, sender & 0x3f, sender & 0x40, &fx);
      else
        {
          struct cl_msg m;
          if (cl_msg_decode (data + pos, len, &m) == 0)
            {
              fuzz_roundtrip (&m);
              cl_table_apply (&t, sender, &m, &fx);
              cl_msg_free (&m);
            }
        }
      pos += len;
    }
  cl_table_clear (&t);
  return 0;
}
