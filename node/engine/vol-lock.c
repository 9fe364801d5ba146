/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vol-lock.c: chunk locks.
 *
 * A request takes every chunk it covers at once, or none (single thread,
 * so "at once" is free and deadlock impossible).  Reads and writes to
 * chunks already in the CoW layer take the chunk shared; a CoW fault (the
 * chunk is copied from the base or written whole for the first time) and
 * a read-modify-write of a partial block take it exclusive.  So nobody
 * ever reads a half-copied chunk, and two faults of one chunk never race.
 * A hydration copy takes its chunks exclusive too: a client write waits
 * for it (and then finds the bit set), and it waits for a client write
 * (and then skips the chunk the write filled).
 *
 * A request that cannot get its locks waits on the volume's wait list and
 * is retried, in arrival order, whenever a lock is released.  Lock entries
 * live in a hash table only while held.
 */
#include <config.h>

#include <stdlib.h>

#include "volume-int.h"

static struct chunk_lock **
lock_slot (struct volume *v, uint64_t chunk)
{
  struct chunk_lock **p = &v->locks[(chunk * 0x9E3779B97F4A7C15ull) >> 52];
  while (*p && (*p)->chunk != chunk)
    p = &(*p)->hnext;
  return p;
}

/* Does the request need chunk c exclusive?  Reads never do; writes do
 * when the chunk is not yet in the CoW layer or the part of it written is
 * not block-aligned. */
bool
lock_chunk_excl_needed (struct volume *v, struct vreq *rq, uint64_t c)
{
  if (rq->type == VR_READ)
    return false;
  if (rq->type == VR_TRIM || rq->type == VR_HYDRATE)
    return true;
  if (!dscow_bit_test (v->map, c))
    return true;
  uint64_t cstart = c * v->cs, cend = cstart + vol_chunk_len (v, c);
  uint64_t s = rq->off > cstart ? rq->off : cstart;
  uint64_t e = rq->off + rq->len < cend ? rq->off + rq->len : cend;
  return (s | e) & (VOL_ALIGN - 1);
}

static bool
lock_conflicts (struct volume *v, struct vreq *rq)
{
  for (uint64_t c = rq->c0; c <= rq->c1; c++)
    {
      struct chunk_lock *l = *lock_slot (v, c);
      if (!l)
        continue;
      if (l->excl || lock_chunk_excl_needed (v, rq, c))
        return true;
    }
  return false;
}

bool
lock_try (struct volume *v, struct vreq *rq)
{
  if (lock_conflicts (v, rq))
    return false;
  for (uint64_t c = rq->c0; c <= rq->c1; c++)
    {
      bool excl = lock_chunk_excl_needed (v, rq, c);
      struct chunk_lock **p = lock_slot (v, c);
      if (!*p)
        {
          struct chunk_lock *l = calloc (1, sizeof *l);
          if (!l)
            abort ();
          l->chunk = c;
          *p = l;
        }
      if (excl)
        (*p)->excl = true;
      else
        (*p)->shared++;
    }
  rq->locked = true;
  return true;
}

static void
lock_wake (struct volume *v)
{
  struct vreq *list = vreq_take (&v->lock_wait_head, &v->lock_wait_tail), *rq;
  while ((rq = vreq_pop (&list)))
    io_start (rq); /* re-queues itself if still blocked */
}

void
lock_release (struct volume *v, struct vreq *rq)
{
  if (!rq->locked)
    return;
  rq->locked = false;
  for (uint64_t c = rq->c0; c <= rq->c1; c++)
    {
      struct chunk_lock **p = lock_slot (v, c);
      struct chunk_lock *l = *p;
      if (!l)
        continue;
      if (l->excl)
        l->excl = false;
      else if (l->shared)
        l->shared--;
      if (!l->excl && l->shared == 0)
        {
          *p = l->hnext;
          free (l);
        }
    }
  if (v->lock_wait_head)
    lock_wake (v);
}
