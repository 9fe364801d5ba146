/* SPDX-License-Identifier: GPL-2.0-or-later */
/* key.c: a node's registration key, derived from the cluster name and
 * the corosync node id, the way fence_scsi derives one (a hash of the
 * cluster name, then the node id), so that every node computes every
 * other node's key without asking it.
 *
 * Layout of the 64-bit key (written big-endian on the wire, as SCSI says):
 *
 *   bits 63..32   FNV-1a 32-bit hash of the cluster name's bytes
 *   bits 31..0    node id
 *
 * so fence_key ("prod", 3) prints as 0xHHHHHHHH00000003 and a key listed
 * by PR READ KEYS names its node and tells whether it is this cluster's.
 * The value is part of the on-LUN state of a running cluster: never
 * change the hash or the layout.  Key 0 means "no key" in SCSI; node id 0
 * is not a valid corosync id, and fence_key returns 0 for it.
 */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>

#include "fence.h"

#define KEY_FNV_OFFSET 0x811c9dc5u
#define KEY_FNV_PRIME 0x01000193u

static uint32_t
key_hash (const char *s)
{
  uint32_t h = KEY_FNV_OFFSET;

  for (; *s; s++)
    {
      h ^= (unsigned char) *s;
      h *= KEY_FNV_PRIME;
    }
  return h;
}

uint64_t
fence_key (const char *cluster_name, uint32_t nodeid)
{
  if (nodeid == 0)
    return 0;
  return (uint64_t) key_hash (cluster_name) << 32 | nodeid;
}

uint32_t
fence_key_nodeid (uint64_t key)
{
  return key & 0xffffffffu;
}

bool
fence_key_in_cluster (uint64_t key, const char *cluster_name)
{
  return key != 0 && (key >> 32) == key_hash (cluster_name);
}
