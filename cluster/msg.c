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
 *                 cow_ident[128] (the CoW LUN's VPD identity, or empty)
 *   UNDEFINE, ACQUIRE                        name[64]
 *   HANDOFF       name[64] u32 to u64 generation
 *   RELEASE       name[64] u64 generation
 *   MIGRATE       name[64] u32 to
 *   FENCE_CONFIRM u32 node
 *   FENCED        u32 node (fenced by the sender, on the storage)
 *   SYNC_MARK     (empty)
 *   SYNC_DATA     retired with version 1 (the whole table in one message,
 *                 624 bytes a volume): decodes as a NOP
 *   SYNC_PIECE    u32 piece (0, 1, ...), u32 total volumes in the table,
 *                 u32 flags (1 = the last piece), u32 count, then per
 *                 volume: u16 length + name, u16 length + base, u16 length
 *                 + cow, u16 length + cow_ident (no NUL; shorter than the
 *                 DEFINE fields), u32
 *                 chunk, u32 commit, u32 flags (1 exclusive, 2 bouncing,
 *                 4 the bounce count follows), u32 state, u32 owner, u64
 *                 epoch, u64 generation, u32 requester, u32 fenced_node,
 *                 and with flag 4 the bounce count: u32 node a, u32 node
 *                 b, u32 moves, u64 window start (sender's wall-clock ms);
 *                 then u32 crc32c of every byte before it, header
 *                 included.  A piece stays under
 *                 CL_PIECE_MAX: a table of any size travels in pieces of
 *                 a few hundred volumes, never as one huge CPG message.
 *   DEFINE_MANY   the SYNC_PIECE encoding, for definitions only (a node that
 *                 defines many volumes at once: the first one of a whole
 *                 cluster starting); each volume applies as a DEFINE, its
 *                 state fields are ignored
 *   SYNC_REQUEST  (empty) the sender's table is stale though it stays in
 *                 the group (its agent found itself fenced): a synced
 *                 member sends a SYNC_MARK and the table, as for a join.
 *                 An agent that predates it takes it for a NOP.
 *   SYNC_HAVE     u32 count, u32 flags (0), u64 sum0, u64 sum1: the digest
 *                 of the definitions a joiner holds (cluster_digest)
 *   SYNC_STATES   a piece of the table for joiners that hold its
 *                 definitions: the SYNC_PIECE header (piece, total, flags,
 *                 count), u64 sum0, u64 sum1 (the digest of the table's
 *                 definitions, of which total is the count), then per
 *                 volume: u16 length + name, u8 flags (1 bouncing, 2 the
 *                 numbers follow, 4 the bounce count follows), u8 state,
 *                 with flag 2: u32 owner, u64 epoch, u64 generation, u32
 *                 requester, u32 fenced_node, and with flag 4 the bounce
 *                 count as in SYNC_PIECE; then u32 crc32c of every byte
 *                 before it.
 *                 A volume nobody has used is 12 bytes or so, not 125.
 *
 * Version 2 added SYNC_PIECE and DEFINE_MANY; version 3 the cow_ident of
 * DEFINE and of a piece's volumes; version 4 SYNC_HAVE and SYNC_STATES;
 * version 5 (this one) the bounce count in both kinds of piece (a joiner
 * that started its count from nothing would decide a request otherwise
 * than the members it joined).  Agents of different
 * versions refuse each other's messages (-EPROTONOSUPPORT, logged once
 * per node by cpg.c), so a mixed cluster never shares a table.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "cluster-int.h"
#include "crc32c.h"

#define DEF_SIZE                                                               \
  (CLUSTER_NAME_MAX + 2 * CLUSTER_URI_MAX + 12 + CLUSTER_IDENT_MAX)

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
  put_str (p + 12, d->cow_ident, CLUSTER_IDENT_MAX);
}

static int
get_def (struct cluster_voldef *d, const uint8_t *p)
{
  if (get_str (d->name, p, CLUSTER_NAME_MAX) < 0
      || get_str (d->base, p + CLUSTER_NAME_MAX, CLUSTER_URI_MAX) < 0
      || get_str (d->cow, p + CLUSTER_NAME_MAX + CLUSTER_URI_MAX,
                  CLUSTER_URI_MAX)
             < 0)
    return -EINVAL;
  p += CLUSTER_NAME_MAX + 2 * CLUSTER_URI_MAX;
  d->chunk_size = le32_get (p);
  d->commit = le32_get (p + 4);
  d->exclusive = le32_get (p + 8) != 0;
  return get_str (d->cow_ident, p + 12, CLUSTER_IDENT_MAX);
}

/* --- the digest of a set of definitions --- */

/* FNV-1a 64 from a basis over s and its NUL, so that fields cannot run
 * into each other. */
static uint64_t
fnv_str (uint64_t h, const char *s, size_t field)
{
  size_t n = strnlen (s, field - 1);
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t) s[i]) * 0x100000001b3ull;
  return h * 0x100000001b3ull; /* the NUL */
}

static uint64_t
fnv_u32 (uint64_t h, uint32_t v)
{
  for (int i = 0; i < 4; i++, v >>= 8)
    h = (h ^ (v & 0xff)) * 0x100000001b3ull;
  return h;
}

/* splitmix64's finaliser: every bit of h moves every bit of the result,
 * so sums of hashes of similar definitions do not cancel. */
static uint64_t
mix (uint64_t h)
{
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

static uint64_t
def_hash (const struct cluster_voldef *d, uint64_t h)
{
  h = fnv_str (h, d->name, CLUSTER_NAME_MAX);
  h = fnv_str (h, d->base, CLUSTER_URI_MAX);
  h = fnv_str (h, d->cow, CLUSTER_URI_MAX);
  h = fnv_str (h, d->cow_ident, CLUSTER_IDENT_MAX);
  h = fnv_u32 (h, d->chunk_size);
  h = fnv_u32 (h, d->commit);
  return mix (fnv_u32 (h, d->exclusive));
}

static void
digest_hashes (const struct cluster_voldef *def, uint64_t h[2])
{
  h[0] = def_hash (def, 0xcbf29ce484222325ull);
  h[1] = def_hash (def, 0x84222325cbf29ce4ull);
}

void
cluster_digest_add (struct cluster_digest *d, const struct cluster_voldef *def)
{
  uint64_t h[2];
  digest_hashes (def, h);
  d->count++;
  d->sum[0] += h[0];
  d->sum[1] += h[1];
}

void
cluster_digest_sub (struct cluster_digest *d, const struct cluster_voldef *def)
{
  uint64_t h[2];
  digest_hashes (def, h);
  d->count--;
  d->sum[0] -= h[0];
  d->sum[1] -= h[1];
}

bool
cluster_digest_equal (const struct cluster_digest *a,
                      const struct cluster_digest *b)
{
  return a->count == b->count && a->sum[0] == b->sum[0]
         && a->sum[1] == b->sum[1];
}

/* --- SYNC_PIECE, DEFINE_MANY and SYNC_STATES --- */

#define PIECE_VOL_FIXED (8 + 44)
#define BOUNCE_SIZE 20

/* The bounce count travels only while there is one. */
static bool
bounce_counted (const struct cluster_vol *v)
{
  return v->bounce_count > 0;
}

static uint8_t *
put_bounce (uint8_t *p, const struct cluster_vol *v)
{
  le32_put (p, v->bounce_a);
  le32_put (p + 4, v->bounce_b);
  le32_put (p + 8, v->bounce_count);
  le64_put (p + 12, v->bounce_since_ms);
  return p + BOUNCE_SIZE;
}

static int
get_bounce (struct cluster_vol *v, const uint8_t **pp, const uint8_t *end)
{
  const uint8_t *p = *pp;
  if (end - p < BOUNCE_SIZE)
    return -EINVAL;
  v->bounce_a = le32_get (p);
  v->bounce_b = le32_get (p + 4);
  v->bounce_count = le32_get (p + 8);
  v->bounce_since_ms = le64_get (p + 12);
  *pp = p + BOUNCE_SIZE;
  return v->bounce_count ? 0 : -EINVAL;
}

size_t
cl_msg_piece_vol_size (const struct cluster_vol *v)
{
  return PIECE_VOL_FIXED + (bounce_counted (v) ? BOUNCE_SIZE : 0)
         + strnlen (v->def.name, CLUSTER_NAME_MAX - 1)
         + strnlen (v->def.base, CLUSTER_URI_MAX - 1)
         + strnlen (v->def.cow, CLUSTER_URI_MAX - 1)
         + strnlen (v->def.cow_ident, CLUSTER_IDENT_MAX - 1);
}

/* A volume's state has numbers worth sending (else only state and flags:
 * a volume nobody has used). */
static bool
states_numbers (const struct cluster_vol *v)
{
  return v->owner || v->epoch || v->generation || v->requester
         || v->fenced_node;
}

#define STATES_VOL_FIXED (2 + 2)
#define STATES_VOL_NUMBERS 28

size_t
cl_msg_states_vol_size (const struct cluster_vol *v)
{
  return STATES_VOL_FIXED + strnlen (v->def.name, CLUSTER_NAME_MAX - 1)
         + (states_numbers (v) ? STATES_VOL_NUMBERS : 0)
         + (bounce_counted (v) ? BOUNCE_SIZE : 0);
}

static size_t
piece_size (const struct cl_msg *m)
{
  bool states = m->type == CL_MSG_SYNC_STATES;
  size_t n = 16 + 4 + (states ? 16 : 0);
  for (uint32_t i = 0; i < m->nvols; i++)
    n += states ? cl_msg_states_vol_size (&m->vols[i])
                : cl_msg_piece_vol_size (&m->vols[i]);
  return n;
}

static uint8_t *
put_lstr (uint8_t *p, const char *s, size_t field)
{
  size_t n = strnlen (s, field - 1);
  le16_put (p, (uint16_t) n);
  memcpy (p + 2, s, n);
  return p + 2 + n;
}

static uint8_t *
put_piece_vol (uint8_t *p, const struct cluster_vol *v)
{
  p = put_lstr (p, v->def.name, CLUSTER_NAME_MAX);
  p = put_lstr (p, v->def.base, CLUSTER_URI_MAX);
  p = put_lstr (p, v->def.cow, CLUSTER_URI_MAX);
  p = put_lstr (p, v->def.cow_ident, CLUSTER_IDENT_MAX);
  le32_put (p, v->def.chunk_size);
  le32_put (p + 4, v->def.commit);
  le32_put (p + 8, (v->def.exclusive ? 1u : 0) | (v->bouncing ? 2u : 0)
                       | (bounce_counted (v) ? 4u : 0));
  le32_put (p + 12, v->state);
  le32_put (p + 16, v->owner);
  le64_put (p + 20, v->epoch);
  le64_put (p + 28, v->generation);
  le32_put (p + 36, v->requester);
  le32_put (p + 40, v->fenced_node);
  return bounce_counted (v) ? put_bounce (p + 44, v) : p + 44;
}

static uint8_t *
put_states_vol (uint8_t *p, const struct cluster_vol *v)
{
  bool numbers = states_numbers (v);
  p = put_lstr (p, v->def.name, CLUSTER_NAME_MAX);
  p[0] = (uint8_t) ((v->bouncing ? 1 : 0) | (numbers ? 2 : 0)
                    | (bounce_counted (v) ? 4 : 0));
  p[1] = (uint8_t) v->state;
  p += 2;
  if (numbers)
    {
      le32_put (p, v->owner);
      le64_put (p + 4, v->epoch);
      le64_put (p + 12, v->generation);
      le32_put (p + 20, v->requester);
      le32_put (p + 24, v->fenced_node);
      p += STATES_VOL_NUMBERS;
    }
  return bounce_counted (v) ? put_bounce (p, v) : p;
}

/* The piece's body after the header; the checksum goes in by the caller
 * once the header is written. */
static void
put_piece (uint8_t *p, const struct cl_msg *m)
{
  bool states = m->type == CL_MSG_SYNC_STATES;
  le32_put (p, m->piece);
  le32_put (p + 4, m->total);
  le32_put (p + 8, m->last ? 1 : 0);
  le32_put (p + 12, m->nvols);
  p += 16;
  if (states)
    {
      le64_put (p, m->digest.sum[0]);
      le64_put (p + 8, m->digest.sum[1]);
      p += 16;
    }
  for (uint32_t i = 0; i < m->nvols; i++)
    p = states ? put_states_vol (p, &m->vols[i])
               : put_piece_vol (p, &m->vols[i]);
}

/* A length-prefixed string of at most field - 1 bytes, without NUL,
 * within [*p, end). */
static int
get_lstr (char *dst, const uint8_t **p, const uint8_t *end, size_t field)
{
  if (end - *p < 2)
    return -EINVAL;
  size_t n = le16_get (*p);
  if (n >= field || (size_t) (end - *p - 2) < n || memchr (*p + 2, 0, n))
    return -EINVAL;
  memcpy (dst, *p + 2, n);
  dst[n] = '\0';
  *p += 2 + n;
  return 0;
}

static int
get_piece_vol (struct cluster_vol *v, const uint8_t **pp, const uint8_t *end)
{
  if (get_lstr (v->def.name, pp, end, CLUSTER_NAME_MAX) < 0 || !v->def.name[0]
      || get_lstr (v->def.base, pp, end, CLUSTER_URI_MAX) < 0
      || get_lstr (v->def.cow, pp, end, CLUSTER_URI_MAX) < 0
      || get_lstr (v->def.cow_ident, pp, end, CLUSTER_IDENT_MAX) < 0
      || end - *pp < 44)
    return -EINVAL;
  const uint8_t *p = *pp;
  uint32_t flags = le32_get (p + 8);
  if (le32_get (p + 12) > CL_FENCING || flags > 7)
    return -EINVAL;
  v->def.chunk_size = le32_get (p);
  v->def.commit = le32_get (p + 4);
  v->def.exclusive = flags & 1;
  v->bouncing = (flags & 2) != 0;
  v->state = (enum cluster_vol_state) le32_get (p + 12);
  v->owner = le32_get (p + 16);
  v->epoch = le64_get (p + 20);
  v->generation = le64_get (p + 28);
  v->requester = le32_get (p + 36);
  v->fenced_node = le32_get (p + 40);
  *pp = p + 44;
  return flags & 4 ? get_bounce (v, pp, end) : 0;
}

/* A SYNC_STATES volume: the name and the state; the definition is the
 * joiner's own. */
static int
get_states_vol (struct cluster_vol *v, const uint8_t **pp, const uint8_t *end)
{
  if (get_lstr (v->def.name, pp, end, CLUSTER_NAME_MAX) < 0 || !v->def.name[0]
      || end - *pp < 2)
    return -EINVAL;
  const uint8_t *p = *pp;
  uint8_t flags = p[0], state = p[1];
  p += 2;
  if (flags > 7 || state > CL_FENCING
      || ((flags & 2) && end - p < STATES_VOL_NUMBERS))
    return -EINVAL;
  v->bouncing = flags & 1;
  v->state = (enum cluster_vol_state) state;
  if (flags & 2)
    {
      v->owner = le32_get (p);
      v->epoch = le64_get (p + 4);
      v->generation = le64_get (p + 12);
      v->requester = le32_get (p + 20);
      v->fenced_node = le32_get (p + 24);
      p += STATES_VOL_NUMBERS;
    }
  *pp = p;
  return flags & 4 ? get_bounce (v, pp, end) : 0;
}

/* b: the whole message (its checksum covers the header too). */
static int
decode_piece (const uint8_t *b, size_t len, struct cl_msg *m)
{
  bool states = m->type == CL_MSG_SYNC_STATES;
  size_t head = 16 + (states ? 16 : 0);
  const uint8_t *p = b + CL_HDR_SIZE, *end = b + len - 4;
  if (len < CL_HDR_SIZE + head + 4)
    return -EINVAL;
  if (crc32c (0, b, len - 4) != le32_get (end))
    return -EBADMSG;
  uint32_t flags = le32_get (p + 8), n = le32_get (p + 12);
  if (flags > 1
      || n > (size_t) (end - p - head)
                 / (states ? STATES_VOL_FIXED + 1 : PIECE_VOL_FIXED))
    return -EINVAL;
  m->piece = le32_get (p);
  m->total = le32_get (p + 4);
  m->last = flags & 1;
  if (states)
    {
      m->digest.count = m->total;
      m->digest.sum[0] = le64_get (p + 16);
      m->digest.sum[1] = le64_get (p + 24);
    }
  if (!(m->vols = calloc (n ? n : 1, sizeof *m->vols)))
    return -ENOMEM;
  m->nvols = n;
  p += head;
  uint32_t i = 0;
  while (i < n
         && (states ? get_states_vol (&m->vols[i], &p, end)
                    : get_piece_vol (&m->vols[i], &p, end))
                == 0)
    i++;
  if (i == n && p == end)
    return 0;
  cl_msg_free (m);
  return -EINVAL;
}

static size_t
body_size (const struct cl_msg *m)
{
  switch (m->type)
    {
    case CL_MSG_DEFINE:
      return DEF_SIZE;
    case CL_MSG_UNDEFINE:
    case CL_MSG_ACQUIRE:
      return CLUSTER_NAME_MAX;
    case CL_MSG_HANDOFF:
      return CLUSTER_NAME_MAX + 12;
    case CL_MSG_RELEASE:
      return CLUSTER_NAME_MAX + 8;
    case CL_MSG_MIGRATE:
      return CLUSTER_NAME_MAX + 4;
    case CL_MSG_HANDOFF_REFUSED:
      return CLUSTER_NAME_MAX + 8;
    case CL_MSG_FENCE_CONFIRM:
    case CL_MSG_FENCED:
      return 4;
    case CL_MSG_SYNC_PIECE:
    case CL_MSG_DEFINE_MANY:
    case CL_MSG_SYNC_STATES:
      return piece_size (m);
    case CL_MSG_SYNC_HAVE:
      return 24;
    default:
      return 0;
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
    case CL_MSG_UNDEFINE:
    case CL_MSG_ACQUIRE:
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
    case CL_MSG_HANDOFF_REFUSED:
      put_str (p, m->def.name, CLUSTER_NAME_MAX);
      le32_put (p + CLUSTER_NAME_MAX, m->node);
      le32_put (p + CLUSTER_NAME_MAX + 4, m->error);
      break;
    case CL_MSG_FENCE_CONFIRM:
    case CL_MSG_FENCED:
      le32_put (p, m->node);
      break;
    case CL_MSG_SYNC_PIECE:
    case CL_MSG_DEFINE_MANY:
    case CL_MSG_SYNC_STATES:
      put_piece (p, m);
      le32_put (b + n - 4, crc32c (0, b, n - 4));
      break;
    case CL_MSG_SYNC_HAVE:
      le32_put (p, (uint32_t) m->digest.count);
      le64_put (p + 8, m->digest.sum[0]);
      le64_put (p + 16, m->digest.sum[1]);
      break;
    }
  *len = n;
  return b;
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
      m->type = CL_MSG_NOP; /* a newer agent's message: ignore it */
      return 0;
    }
  if (m->type == CL_MSG_SYNC_DATA)
    {
      m->type = CL_MSG_NOP; /* retired: a version 1 table */
      return 0;
    }
  if (m->type == CL_MSG_SYNC_PIECE || m->type == CL_MSG_DEFINE_MANY
      || m->type == CL_MSG_SYNC_STATES)
    return decode_piece (b, len, m);
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
    case CL_MSG_SYNC_HAVE:
      if (le32_get (p + 4) != 0)
        return -EINVAL;
      m->digest.count = le32_get (p);
      m->digest.sum[0] = le64_get (p + 8);
      m->digest.sum[1] = le64_get (p + 16);
      return 0;
    case CL_MSG_NOP:
    case CL_MSG_SYNC_MARK:
    case CL_MSG_SYNC_REQUEST:
      return 0;
    default:
      if (get_str (m->def.name, p, CLUSTER_NAME_MAX) < 0)
        return -EINVAL;
      p += CLUSTER_NAME_MAX;
      if (m->type == CL_MSG_HANDOFF || m->type == CL_MSG_MIGRATE
          || m->type == CL_MSG_HANDOFF_REFUSED)
        m->node = le32_get (p);
      if (m->type == CL_MSG_HANDOFF_REFUSED)
        m->error = le32_get (p + 4);
      if (m->type == CL_MSG_HANDOFF)
        m->generation = le64_get (p + 4);
      if (m->type == CL_MSG_RELEASE)
        m->generation = le64_get (p);
      return 0;
    }
}

int
cl_msg_peek_type (const void *buf, size_t len)
{
  const uint8_t *b = buf;
  if (len < CL_HDR_SIZE || le32_get (b + 4) != len
      || (b[0] | b[1] << 8) != CL_MSG_VERSION)
    return -1;
  return b[2] | b[3] << 8;
}

int
cl_msg_peek_piece (const void *buf, size_t len, uint32_t *piece,
                   uint32_t *total)
{
  int type = cl_msg_peek_type (buf, len);
  if ((type != CL_MSG_SYNC_PIECE && type != CL_MSG_SYNC_STATES)
      || len < CL_HDR_SIZE + 8)
    return -1;
  *piece = le32_get ((const uint8_t *) buf + CL_HDR_SIZE);
  *total = le32_get ((const uint8_t *) buf + CL_HDR_SIZE + 4);
  return 0;
}

void
cl_msg_free (struct cl_msg *m)
{
  free (m->vols);
  m->vols = NULL;
}
