/* SPDX-License-Identifier: GPL-2.0-or-later */
/* msg.c: the cluster messages on the wire.
 *
 * Header (16 bytes, little-endian): u16 version, u16 type, u32 total
 * length, u64 sender's wall-clock milliseconds.  Bodies are fixed-width
 * fields; strings are fixed-size and NUL padded, and a string without its
 * NUL is malformed.  Every length is checked before anything is read; a
 * message of another version is refused, an unknown type is a NOP.
 *
 *   DEFINE        name[64] base[256] cow[256] u32 chunk u32 commit u32 excl
 *   UNDEFINE, ACQUIRE                        name[64]
 *   HANDOFF       name[64] u32 to u64 generation
 *   RELEASE       name[64] u64 generation
 *   MIGRATE       name[64] u32 to
 *   FENCE_CONFIRM u32 node
 *   FENCED        u32 node (fenced by the sender, on the storage)
 *   SYNC_MARK     (empty)
 *   SYNC_DATA     u32 count, then per volume: the DEFINE body, u32 state,
 *                 u32 owner, u64 epoch, u64 generation, u32 requester,
 *                 u32 fenced_node, u32 bouncing
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "cluster-int.h"

#define DEF_SIZE (CLUSTER_NAME_MAX + 2 * CLUSTER_URI_MAX + 12)
#define VOL_SIZE (DEF_SIZE + 36)

static void
put_str (uint8_t *p, const char *s, size_t field)
{
  memset (p, 0, field);
  memcpy (p, s, strnlen (s, field - 1));
}

static int
get_str (char *dst, const uint8_t *p, size_t field)
{
  if (!memchr (p, '\0', field))
    return -EINVAL;
  memcpy (dst, p, field);
  return 0;
}

static void
put_def (uint8_t *p, const struct cluster_voldef *d)
{
  put_str (p, d->name, CLUSTER_NAME_MAX);
  put_str (p + CLUSTER_NAME_MAX, d->base, CLUSTER_URI_MAX);
  put_str (p + CLUSTER_NAME_MAX + CLUSTER_URI_MAX, d->cow, CLUSTER_URI_MAX);
  p += CLUSTER_NAME_MAX + 2 * CLUSTER_URI_MAX;
  le32_put (p, d->chunk_size);
  le32_put (p + 4, d->commit);
  le32_put (p + 8, d->exclusive);
}

static int
get_def (struct cluster_voldef *d, const uint8_t *p)
{
  if (get_str (d->name, p, CLUSTER_NAME_MAX) < 0
      || get_str (d->base, p + CLUSTER_NAME_MAX, CLUSTER_URI_MAX) < 0
      || get_str (d->cow, p + CLUSTER_NAME_MAX + CLUSTER_URI_MAX,
                  CLUSTER_URI_MAX) < 0)
    return -EINVAL;
  p += CLUSTER_NAME_MAX + 2 * CLUSTER_URI_MAX;
  d->chunk_size = le32_get (p);
  d->commit = le32_get (p + 4);
  d->exclusive = le32_get (p + 8) != 0;
  return 0;
}

static size_t
body_size (const struct cl_msg *m)
{
  switch (m->type)
    {
    case CL_MSG_DEFINE: return DEF_SIZE;
    case CL_MSG_UNDEFINE: case CL_MSG_ACQUIRE: return CLUSTER_NAME_MAX;
    case CL_MSG_HANDOFF: return CLUSTER_NAME_MAX + 12;
    case CL_MSG_RELEASE: return CLUSTER_NAME_MAX + 8;
    case CL_MSG_MIGRATE: return CLUSTER_NAME_MAX + 4;
    case CL_MSG_FENCE_CONFIRM: case CL_MSG_FENCED: return 4;
    case CL_MSG_SYNC_DATA: return 4 + (size_t) m->nvols * VOL_SIZE;
    default: return 0;
    }
}

void *
cl_msg_encode (const struct cl_msg *m, size_t *len)
{
  size_t n = CL_HDR_SIZE + body_size (m);
  uint8_t *b = calloc (1, n), *p = b + CL_HDR_SIZE;
  if (!b)
    return NULL;
  b[0] = CL_MSG_VERSION;
  b[2] = (uint8_t) m->type;
  b[3] = (uint8_t) (m->type >> 8);
  le32_put (b + 4, (uint32_t) n);
  le64_put (b + 8, m->time_ms);
  switch (m->type)
    {
    case CL_MSG_DEFINE:
      put_def (p, &m->def);
      break;
    case CL_MSG_UNDEFINE: case CL_MSG_ACQUIRE:
      put_str (p, m->def.name, CLUSTER_NAME_MAX);
      break;
    case CL_MSG_HANDOFF:
      put_str (p, m->def.name, CLUSTER_NAME_MAX);
      le32_put (p + CLUSTER_NAME_MAX, m->node);
      le64_put (p + CLUSTER_NAME_MAX + 4, m->generation);
      break;
    case CL_MSG_RELEASE:
      put_str (p, m->def.name, CLUSTER_NAME_MAX);
      le64_put (p + CLUSTER_NAME_MAX, m->generation);
      break;
    case CL_MSG_MIGRATE:
      put_str (p, m->def.name, CLUSTER_NAME_MAX);
      le32_put (p + CLUSTER_NAME_MAX, m->node);
      break;
    case CL_MSG_FENCE_CONFIRM:
    case CL_MSG_FENCED:
      le32_put (p, m->node);
      break;
    case CL_MSG_SYNC_DATA:
      le32_put (p, m->nvols);
      for (uint32_t i = 0; i < m->nvols; i++)
        {
          const struct cluster_vol *v = &m->vols[i];
          uint8_t *q = p + 4 + (size_t) i * VOL_SIZE;
          put_def (q, &v->def);
          q += DEF_SIZE;
          le32_put (q, v->state);
          le32_put (q + 4, v->owner);
          le64_put (q + 8, v->epoch);
          le64_put (q + 16, v->generation);
          le32_put (q + 24, v->requester);
          le32_put (q + 28, v->fenced_node);
          le32_put (q + 32, v->bouncing);
        }
      break;
    }
  *len = n;
  return b;
}

static int
decode_sync (const uint8_t *p, size_t blen, struct cl_msg *m)
{
  if (blen < 4)
    return -EINVAL;
  uint32_t n = le32_get (p);
  if (n > (blen - 4) / VOL_SIZE || blen != 4 + (size_t) n * VOL_SIZE)
    return -EINVAL;
  m->vols = calloc (n ? n : 1, sizeof *m->vols);
  if (!m->vols)
    return -ENOMEM;
  m->nvols = n;
  for (uint32_t i = 0; i < n; i++)
    {
      struct cluster_vol *v = &m->vols[i];
      const uint8_t *q = p + 4 + (size_t) i * VOL_SIZE;
      if (get_def (&v->def, q) < 0 || le32_get (q + DEF_SIZE) > CL_FENCING)
        return -EINVAL;
      q += DEF_SIZE;
      v->state = (enum cluster_vol_state) le32_get (q);
      v->owner = le32_get (q + 4);
      v->epoch = le64_get (q + 8);
      v->generation = le64_get (q + 16);
      v->requester = le32_get (q + 24);
      v->fenced_node = le32_get (q + 28);
      v->bouncing = le32_get (q + 32) != 0;
    }
  return 0;
}

int
cl_msg_decode (const void *buf, size_t len, struct cl_msg *m)
{
  const uint8_t *b = buf, *p = b + CL_HDR_SIZE;
  memset (m, 0, sizeof *m);
  if (len < CL_HDR_SIZE || le32_get (b + 4) != len)
    return -EINVAL;
  if ((b[0] | b[1] << 8) != CL_MSG_VERSION)
    return -EPROTONOSUPPORT;
  m->type = (uint16_t) (b[2] | b[3] << 8);
  m->time_ms = le64_get (b + 8);
  size_t blen = len - CL_HDR_SIZE;
  if (m->type > CL_MSG_LAST)
    {
      m->type = CL_MSG_NOP;     /* a newer agent's message: ignore it */
      return 0;
    }
  if (m->type == CL_MSG_SYNC_DATA)
    return decode_sync (p, blen, m);
  if (blen != body_size (m))
    return -EINVAL;
  switch (m->type)
    {
    case CL_MSG_DEFINE:
      return get_def (&m->def, p);
    case CL_MSG_FENCE_CONFIRM:
    case CL_MSG_FENCED:
      m->node = le32_get (p);
      return 0;
    case CL_MSG_NOP: case CL_MSG_SYNC_MARK:
      return 0;
    default:
      if (get_str (m->def.name, p, CLUSTER_NAME_MAX) < 0)
        return -EINVAL;
      p += CLUSTER_NAME_MAX;
      if (m->type == CL_MSG_HANDOFF || m->type == CL_MSG_MIGRATE)
        m->node = le32_get (p);
      if (m->type == CL_MSG_HANDOFF)
        m->generation = le64_get (p + 4);
      if (m->type == CL_MSG_RELEASE)
        m->generation = le64_get (p);
      return 0;
    }
}

void
cl_msg_free (struct cl_msg *m)
{
  free (m->vols);
  m->vols = NULL;
}
