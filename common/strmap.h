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
#include <sys/mman.h>

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

/* Slots of a map this large are mapped from the kernel, not from malloc,
 * and populated in the same call: items land on random slots, so in
 * pages of 4 KiB the first few hundred inserts each took a page fault of
 * their own (three maps reserved for a table of 100,000 volumes: the
 * first 256 inserts took 16 ms on a paravirtualised host, 1,500 faults). */
#define STRMAP_MAP_BYTES (1u << 20)

static inline void **
strmap_slots (size_t cap)
{
  size_t bytes = cap * sizeof (void *);
  if (bytes < STRMAP_MAP_BYTES)
    return calloc (cap, sizeof (void *));
  void *p = mmap (NULL, bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static inline void
strmap_slots_free (void **slot, size_t cap)
{
  if (cap * sizeof (void *) < STRMAP_MAP_BYTES)
    free (slot);
  else
    munmap (slot, cap * sizeof (void *));
}

/* Rehash into at least cap slots (a power of two). */
static inline int
strmap_resize (struct strmap *m, size_t cap)
{
  void **old = m->slot;
  size_t ocap = m->cap;
  if (!(m->slot = strmap_slots (cap)))
    {
      m->slot = old;
      return -1;
    }
  m->cap = cap;
  for (size_t i = 0; i < ocap; i++)
    if (old[i])
      m->slot[strmap_probe (m, m->key (old[i], m->ctx))] = old[i];
  strmap_slots_free (old, ocap);
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
  strmap_slots_free (m->slot, m->cap);
  m->slot = NULL;
  m->cap = m->n = 0;
}

#endif /* COWHERD_STRMAP_H */
