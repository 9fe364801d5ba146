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
 * at most half of them used; removal shifts the following run back (no
 * tombstones), so lookups stay short after any number of removals.
 * FNV-1a 64 hashes the key.  Not thread-safe: each map belongs to the one
 * thread that uses it.
 *
 * Growing doubles the slots and moves the items over a few at a time, on
 * each later put and delete (STRMAP_STEP slots of the old array), not all
 * at once: a host that receives definitions one by one rehashed its seven
 * maps of 16,384 volumes in one go, and its loop did not turn for 224 ms
 * (bench/scale 20000, perf: strmap_resize most of it).  While items move,
 * a lookup tries the new slots, then the old; an item deleted or replaced
 * there leaves a tombstone (STRMAP_GONE), the old array's only kind.  The
 * old array is empty long before the new one fills (an old one of C slots
 * has C/2 puts to go), and a reserve finishes the move at once.
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
  size_t cap, n; /* cap: 0 or a power of two; n: items in both arrays */
  strmap_key_fn *key;
  const void *ctx; /* handed to key */
  /* A growth under way: the previous slots, moved from index moved on. */
  void **old;
  size_t ocap, moved;
};

#define STRMAP_GONE ((void *) UINTPTR_MAX) /* in old only */
#define STRMAP_STEP 16

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

/* In slots slot[cap]: the slot holding key, or the empty one where it
 * would go. */
static inline size_t
strmap_probe_in (const struct strmap *m, void *const *slot, size_t cap,
                 const char *key)
{
  size_t i = (size_t) strmap_hash (key) & (cap - 1);
  while (slot[i]
         && (slot[i] == STRMAP_GONE
             || strcmp (m->key (slot[i], m->ctx), key) != 0))
    i = (i + 1) & (cap - 1);
  return i;
}

static inline size_t
strmap_probe (const struct strmap *m, const char *key)
{
  return strmap_probe_in (m, m->slot, m->cap, key);
}

/* key's slot in the old array while items move there, or NULL. */
static inline void **
strmap_old_slot (const struct strmap *m, const char *key)
{
  if (!m->old)
    return NULL;
  void **o = &m->old[strmap_probe_in (m, m->old, m->ocap, key)];
  return *o ? o : NULL;
}

static inline void *
strmap_get (const struct strmap *m, const char *key)
{
  if (!m->cap)
    return NULL;
  void *it = m->slot[strmap_probe (m, key)];
  void **o = it ? NULL : strmap_old_slot (m, key);
  return o ? *o : it;
}

/* Slots of a map this large are mapped from the kernel, not from malloc,
 * and populated in the same call: items land on random slots, so in
 * pages of 4 KiB the first few hundred inserts each took a page fault of
 * their own (three maps reserved for a table of 100,000 volumes: the
 * first 256 inserts took 16 ms on a paravirtualised host, 1,500 faults).
 * A fault costs 22-31 us there and populating 0.3 ms a MiB, so from 64
 * KiB on (1 MiB before: at 10,000 volumes a joiner's three maps of 256
 * KiB came from calloc, and reserving them took 3.8-4.6 ms of the CPU of
 * its first step; populated, 0.3-0.5 ms). */
#define STRMAP_MAP_BYTES (64u << 10)

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

/* Move up to `count` old slots' items into the new array. */
static inline void
strmap_move (struct strmap *m, size_t count)
{
  for (; m->old && count > 0 && m->moved < m->ocap; count--, m->moved++)
    {
      void *it = m->old[m->moved];
      if (it && it != STRMAP_GONE)
        {
          m->slot[strmap_probe (m, m->key (it, m->ctx))] = it;
          m->old[m->moved] = STRMAP_GONE; /* keeps the runs after it */
        }
    }
  if (m->old && m->moved == m->ocap)
    {
      strmap_slots_free (m->old, m->ocap);
      m->old = NULL;
      m->ocap = m->moved = 0;
    }
}

/* New slots of at least cap (a power of two), the items to move into
 * them from now on (or all at once: now). */
static inline int
strmap_resize_begin (struct strmap *m, size_t cap, int now)
{
  strmap_move (m, (size_t) -1); /* a move still under way ends first */
  void **slot = strmap_slots (cap);
  if (!slot)
    return -1;
  if (m->cap)
    {
      m->old = m->slot;
      m->ocap = m->cap;
      m->moved = 0;
    }
  m->slot = slot;
  m->cap = cap;
  if (now)
    strmap_move (m, (size_t) -1);
  return 0;
}

/* Rehash into at least cap slots (a power of two), at once. */
static inline int
strmap_resize (struct strmap *m, size_t cap)
{
  return strmap_resize_begin (m, cap, 1);
}

static inline int
strmap_grow (struct strmap *m)
{
  return strmap_resize_begin (m, m->cap ? 2 * m->cap : 64, 0);
}

/* Room for n items without growing: one rehash now instead of several
 * while they are added (a table of known size arriving in pieces). */
static inline int
strmap_reserve (struct strmap *m, size_t n)
{
  size_t cap = m->cap ? m->cap : 64;
  while (cap < 2 * n)
    cap *= 2;
  if (cap == m->cap)
    {
      strmap_move (m, (size_t) -1);
      return 0;
    }
  return strmap_resize (m, cap);
}

/* Add item under its key, replacing an item with the same key.  0 or -1
 * (out of memory; the map is unchanged). */
static inline int
strmap_put (struct strmap *m, void *item)
{
  strmap_move (m, STRMAP_STEP);
  if (2 * (m->n + 1) > m->cap && strmap_grow (m) < 0)
    return -1;
  const char *key = m->key (item, m->ctx);
  void **o = strmap_old_slot (m, key);
  if (o)
    {
      *o = STRMAP_GONE; /* replaced: it lives in the new array now */
      m->n--;
    }
  size_t i = strmap_probe (m, key);
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
  strmap_move (m, STRMAP_STEP);
  void **o = strmap_old_slot (m, key);
  if (o)
    {
      *o = STRMAP_GONE;
      m->n--;
      return;
    }
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
  if (m->old)
    strmap_slots_free (m->old, m->ocap);
  if (m->cap)
    strmap_slots_free (m->slot, m->cap);
  m->slot = m->old = NULL;
  m->cap = m->n = m->ocap = m->moved = 0;
}

#endif /* COWHERD_STRMAP_H */
