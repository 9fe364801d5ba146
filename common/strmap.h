/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/strmap.h: a hash index from a string key to an item, header only.
 *
 * The map does not own its items nor their keys: it stores one pointer per
 * item and asks the caller's key function for the item's key whenever it
 * compares, so a key that lives inside the item (a volume's name) is never
 * copied, and an "item" may be an index into an array that moves
 * (cluster/table.c stores index + 1).  One key maps to at most one item.
 *
 * Open addressing with linear probing, a power-of-two number of slots,
 * at most half of them used (grows by doubling, rehashing every item);
 * removal shifts the following run back (no tombstones), so lookups stay
 * short after any number of removals.  FNV-1a 64 hashes the key.
 * Not thread-safe: each map belongs to the one thread that uses it.
 */
#ifndef COWHERD_STRMAP_H
#define COWHERD_STRMAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef const char *strmap_key_fn (const void *item, const void *ctx);

struct strmap
{
  void **slot;   /* NULL = empty */
  size_t cap, n; /* cap: 0 or a power of two */
  strmap_key_fn *key;
  const void *ctx; /* handed to key */
};

static inline uint64_t
strmap_hash (const char *s)
{
  uint64_t h = 0xcbf29ce484222325ull;
  while (*s)
    h = (h ^ (uint8_t) *s++) * 0x100000001b3ull;
  return h;
}

static inline size_t
strmap_home (const struct strmap *m, const void *item)
{
  return (size_t) strmap_hash (m->key (item, m->ctx)) & (m->cap - 1);
}

/* The slot holding key, or of the empty slot where it would go. */
static inline size_t
strmap_probe (const struct strmap *m, const char *key)
{
  size_t i = (size_t) strmap_hash (key) & (m->cap - 1);
  while (m->slot[i] && strcmp (m->key (m->slot[i], m->ctx), key) != 0)
    i = (i + 1) & (m->cap - 1);
  return i;
}

static inline void *
strmap_get (const struct strmap *m, const char *key)
{
  return m->cap ? m->slot[strmap_probe (m, key)] : NULL;
}

/* Rehash into at least cap slots (a power of two). */
static inline int
strmap_resize (struct strmap *m, size_t cap)
{
  void **old = m->slot;
  size_t ocap = m->cap;
  if (!(m->slot = calloc (cap, sizeof *m->slot)))
    {
      m->slot = old;
      return -1;
    }
  m->cap = cap;
  for (size_t i = 0; i < ocap; i++)
    if (old[i])
      m->slot[strmap_probe (m, m->key (old[i], m->ctx))] = old[i];
  free (old);
  return 0;
}

static inline int
strmap_grow (struct strmap *m)
{
  return strmap_resize (m, m->cap ? 2 * m->cap : 64);
}

/* Room for n items without growing: one rehash now instead of several
 * while they are added (a table of known size arriving in pieces). */
static inline int
strmap_reserve (struct strmap *m, size_t n)
{
  size_t cap = m->cap ? m->cap : 64;
  while (cap < 2 * n)
    cap *= 2;
  return cap == m->cap ? 0 : strmap_resize (m, cap);
}

/* Add item under its key, replacing an item with the same key.  0 or -1
 * (out of memory; the map is unchanged). */
static inline int
strmap_put (struct strmap *m, void *item)
{
  if (2 * (m->n + 1) > m->cap && strmap_grow (m) < 0)
    return -1;
  size_t i = strmap_probe (m, m->key (item, m->ctx));
  m->n += m->slot[i] == NULL;
  m->slot[i] = item;
  return 0;
}

/* Remove the item of key, if any: the run after it moves back so that
 * every item stays reachable from its home slot. */
static inline void
strmap_del (struct strmap *m, const char *key)
{
  if (!m->cap)
    return;
  size_t i = strmap_probe (m, key), mask = m->cap - 1;
  if (!m->slot[i])
    return;
  m->slot[i] = NULL;
  m->n--;
  for (size_t j = (i + 1) & mask; m->slot[j]; j = (j + 1) & mask)
    {
      size_t h = strmap_home (m, m->slot[j]);
      /* Move j back into the hole unless its home lies in (i, j]. */
      if (((j - h) & mask) >= ((j - i) & mask))
        {
          m->slot[i] = m->slot[j];
          m->slot[j] = NULL;
          i = j;
        }
    }
}

static inline void
strmap_free (struct strmap *m)
{
  free (m->slot);
  m->slot = NULL;
  m->cap = m->n = 0;
}

#endif /* COWHERD_STRMAP_H */
