/* SPDX-License-Identifier: GPL-2.0-or-later */
/* table.c: the ownership table, a deterministic state machine.
 *
 * Everything here is a function of the table and the (sender, message) or
 * membership event: no IO, no clocks, no local state other than which
 * node is "us" for routing callbacks.  Every member of the group applies
 * the same sequence and so holds the same table.
 *
 *   unowned  --ACQUIRE(s)------------------------------> owned by s, epoch+1
 *   owned(o) --ACQUIRE(s), s != o, not exclusive------> handing-off to s
 *   handing-off(o->s) --HANDOFF(o, s, gen)------------> owned by s, epoch+1
 *   owned(o) --RELEASE(o)-------------------------------> unowned (or to a
 *                                                        waiting requester)
 *   owned(o) --MIGRATE(any, t)-------------------------> handing-off to t
 *   owned(o) --node o leaves (node down)---------------> fencing(o)
 *   fencing(o) --FENCE_CONFIRM(o)----------------------> unowned
 *   fencing(o) or owned(o) --FENCED(o)-----------------> unowned
 *
 * DEFINE of a name whose CoW device (as named) another volume has is
 * refused on every member alike.
 *
 * The table is an array (UNDEFINE moves the last volume into the hole)
 * with two hash indexes, by name and by CoW device as named, holding
 * index + 1: a message about one volume costs O(1) however many there
 * are; a state transfer appends with cl_table_add after cl_table_reserve.
 *
 * Bounce detection: more than CL_BOUNCE_LIMIT moves by request between
 * the same two nodes within CL_BOUNCE_WINDOW_MS (sender wall-clock time
 * carried in the messages) set `bouncing`; further requests are refused
 * until an explicit MIGRATE or RELEASE, which start the count afresh.  The
 * count and its window travel with the table to a joiner, so that every
 * member decides the same on the next request.
 */
#include <config.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cluster-int.h"
#include "errcode.h"

static void tbl_back (struct cl_table *t, const struct cluster_vol *v);

const char *
cluster_state_name (enum cluster_vol_state s)
{
  static const char *names[] = { "unowned", "owned", "handing-off", "fencing" };
  return s <= CL_FENCING ? names[s] : "unknown";
}

/* --- the indexes: name and CoW device (as named) to index + 1 --- */

static const char *
tbl_name_of (const void *item, const void *ctx)
{
  return ((const struct cl_table *) ctx)->vols[(uintptr_t) item - 1].def.name;
}

static const char *
tbl_cow_of (const void *item, const void *ctx)
{
  return ((const struct cl_table *) ctx)->vols[(uintptr_t) item - 1].def.cow;
}

static const char *
tbl_ident_of (const void *item, const void *ctx)
{
  return ((const struct cl_table *) ctx)
      ->vols[(uintptr_t) item - 1]
      .def.cow_ident;
}

/* The maps ask the table for keys: point them at it (a table may be
 * zero-initialised, or moved by the struct copy of an adoption). */
static struct cl_table *
tbl (struct cl_table *t)
{
  t->by_name.key = tbl_name_of;
  t->by_cow.key = tbl_cow_of;
  t->by_ident.key = tbl_ident_of;
  t->by_name.ctx = t->by_cow.ctx = t->by_ident.ctx = t;
  return t;
}

static void *
tbl_item (const struct cl_table *t, const struct cluster_vol *v)
{
  return (void *) (uintptr_t) (v - t->vols + 1);
}

/* Indexed by name is in the table: its definition counts in the digest. */
static int
tbl_index (struct cl_table *t, struct cluster_vol *v)
{
  if (strmap_put (&t->by_name, tbl_item (t, v)) < 0)
    return -1;
  cluster_digest_add (&t->digest, &v->def);
  if (v->def.cow_ident[0] && !strmap_get (&t->by_ident, v->def.cow_ident)
      && strmap_put (&t->by_ident, tbl_item (t, v)) < 0)
    return -1;
  if (!v->def.cow[0] || strmap_get (&t->by_cow, v->def.cow))
    return 0;
  return strmap_put (&t->by_cow, tbl_item (t, v));
}

static void
tbl_unindex (struct cl_table *t, struct cluster_vol *v)
{
  void *me = tbl_item (t, v);
  if (strmap_get (&t->by_name, v->def.name) == me)
    {
      strmap_del (&t->by_name, v->def.name);
      cluster_digest_sub (&t->digest, &v->def);
    }
  if (strmap_get (&t->by_cow, v->def.cow) == me)
    strmap_del (&t->by_cow, v->def.cow);
  if (v->def.cow_ident[0] && strmap_get (&t->by_ident, v->def.cow_ident) == me)
    strmap_del (&t->by_ident, v->def.cow_ident);
}

struct cluster_vol *
cl_table_find (struct cl_table *t, const char *name)
{
  uintptr_t i = (uintptr_t) strmap_get (&tbl (t)->by_name, name);
  return i ? &t->vols[i - 1] : NULL;
}

void
cl_table_clear (struct cl_table *t)
{
  free (t->vols);
  strmap_free (&t->by_name);
  strmap_free (&t->by_cow);
  strmap_free (&t->by_ident);
  t->vols = NULL;
  t->n = t->cap = 0;
  t->backed = 0;
  memset (&t->digest, 0, sizeof t->digest);
}

/* A new slot at the end, zeroed, not indexed yet. */
static struct cluster_vol *
tbl_append (struct cl_table *t)
{
  if (t->n == t->cap)
    {
      size_t cap = t->cap ? 2 * t->cap : 16;
      struct cluster_vol *nv = realloc (t->vols, cap * sizeof *nv);
      if (!nv)
        return NULL;
      t->vols = nv;
      t->cap = cap;
      t->backed = 0;
    }
  struct cluster_vol *v = &t->vols[t->n++];
  tbl_back (t, v);
  memset (v, 0, sizeof *v);
  return v;
}

/* A table of 100,000 volumes is 75 MB, 18,000 pages of 4 KiB.  On this
 * virtual machine a page's first fault costs 22-31 us (the exception goes
 * through the hypervisor): 0.4-0.6 s of a joiner's loop, where each step
 * that entered new pages ran over its 10 ms bound.  Huge pages (812d00e:
 * MADV_HUGEPAGE, and a thread backing them ahead with
 * MADV_POPULATE_WRITE) cost 16-215 ms for the 76 MiB, 4-11 ms for each
 * 2 MiB at its first touch, and the thread held the process's memory map
 * while it backed each one, so the loop's brk and mmap waited 14-67 ms
 * for it (perf trace of a joiner).  MADV_POPULATE_WRITE of 4 KiB pages is
 * one call in the kernel and no fault: 20-23 ms for the 76 MiB here, 0.3
 * ms a MiB.  So the loop itself backs a large array ahead of the slot it
 * appends, at least half of TBL_AHEAD (1 MiB) and half a MiB at a time,
 * a call every 700 volumes, and never faults on the table.  Only advice:
 * a kernel without MADV_POPULATE_WRITE (before 5.14) says EINVAL, and the
 * table takes its faults as they come. */
#define TBL_BACK_MIN (2u << 20)
#define TBL_AHEAD (1u << 20)
#define TBL_PAGE ((uintptr_t) 4096)

/* Slot v is about to be used: back the array ahead of it. */
static void
tbl_back (struct cl_table *t, const struct cluster_vol *v)
{
  uintptr_t end = (uintptr_t) (v + 1);
  if (end + TBL_AHEAD / 2 <= t->backed || t->cap * sizeof *v < TBL_BACK_MIN)
    return;
  uintptr_t a = (uintptr_t) v & ~(TBL_PAGE - 1);
  if (a < t->backed)
    a = t->backed;
  uintptr_t top
      = ((uintptr_t) (t->vols + t->cap) + TBL_PAGE - 1) & ~(TBL_PAGE - 1);
  uintptr_t to = ((end + TBL_AHEAD) & ~(TBL_PAGE - 1));
  if (to > top)
    to = top;
  if (to > a && madvise ((void *) a, to - a, MADV_POPULATE_WRITE) < 0)
    to = UINTPTR_MAX; /* not here: faults as they come */
  t->backed = to;
}

int
cl_table_reserve (struct cl_table *t, size_t n)
{
  tbl (t);
  if (strmap_reserve (&t->by_name, n) < 0 || strmap_reserve (&t->by_cow, n) < 0
      || strmap_reserve (&t->by_ident, n) < 0)
    return -1;
  if (n > t->cap)
    {
      struct cluster_vol *nv = realloc (t->vols, n * sizeof *nv);
      if (!nv)
        return -1;
      t->vols = nv;
      t->cap = n;
      t->backed = 0;
    }
  return 0;
}

struct cluster_vol *
cl_table_add (struct cl_table *t, const struct cluster_vol *v)
{
  tbl (t);
  if (strmap_get (&t->by_name, v->def.name)
      || (v->def.cow[0] && strmap_get (&t->by_cow, v->def.cow))
      || (v->def.cow_ident[0] && strmap_get (&t->by_ident, v->def.cow_ident)))
    return NULL;
  struct cluster_vol *nv = tbl_append (t);
  if (!nv)
    return NULL;
  *nv = *v;
  if (tbl_index (t, nv) < 0)
    {
      t->n--;
      return NULL;
    }
  return nv;
}

static void fx_error (const struct cl_effects *fx, uint32_t to, int code,
                      const char *vol, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

/* A refusal, reported on the node that asked. */
static void
fx_error (const struct cl_effects *fx, uint32_t to, int code, const char *vol,
          const char *fmt, ...)
{
  if (to != fx->local || !fx->cb->on_error)
    return;
  char s[256];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (s, sizeof s, fmt, ap);
  va_end (ap);
  fx->cb->on_error (fx->ud, vol, code, s);
}

/* generation: the bitmap generation the new owner must find on disk
 * (a handoff), or 0 when there is nothing to check. */
static void
fx_owner (const struct cl_effects *fx, const struct cluster_vol *v,
          uint64_t generation)
{
  if (fx->cb->on_owner)
    fx->cb->on_owner (fx->ud, v->def.name, v->owner, v->epoch, generation);
}

static void
set_owner (struct cluster_vol *v, uint32_t owner, uint64_t generation,
           const struct cl_effects *fx)
{
  v->owner = owner;
  v->state = owner ? CL_OWNED : CL_UNOWNED;
  v->requester = 0;
  if (owner)
    v->epoch++;
  fx_owner (fx, v, generation);
}

static void
ask_owner (struct cluster_vol *v, uint32_t to, const struct cl_effects *fx)
{
  v->state = CL_HANDING_OFF;
  v->requester = to;
  if (v->owner == fx->local && fx->cb->on_handoff_request)
    fx->cb->on_handoff_request (fx->ud, v->def.name, to);
}

/* MIGRATE and RELEASE end a bounce: the next move by request starts a
 * fresh count in a fresh window (a window left over from moves before
 * would end in the middle of the new ones and lose their count). */
static void
bounce_clear (struct cluster_vol *v)
{
  v->bouncing = false;
  v->bounce_a = v->bounce_b = v->bounce_count = 0;
  v->bounce_since_ms = 0;
}

/* Count a move by request; true when the volume is now bouncing. */
static bool
bounce_note (struct cluster_vol *v, uint32_t from, uint32_t to, uint64_t now_ms)
{
  bool same = (v->bounce_a == from && v->bounce_b == to)
              || (v->bounce_a == to && v->bounce_b == from);
  if (!same || now_ms - v->bounce_since_ms > CL_BOUNCE_WINDOW_MS)
    {
      v->bounce_a = from;
      v->bounce_b = to;
      v->bounce_count = 0;
      v->bounce_since_ms = now_ms;
    }
  if (++v->bounce_count > CL_BOUNCE_LIMIT)
    v->bouncing = true;
  return v->bouncing;
}

/* The handlers of the messages about one volume: the volume is found
 * (and exists) before they run; s is the sender. */
typedef void vol_handler (struct cl_table *t, struct cluster_vol *v, uint32_t s,
                          const struct cl_msg *m, const struct cl_effects *fx);

static void
apply_acquire (struct cl_table *t, struct cluster_vol *v, uint32_t s,
               const struct cl_msg *m, const struct cl_effects *fx)
{
  const char *n = v->def.name;
  switch (v->state)
    {
    case CL_UNOWNED:
      set_owner (v, s, v->generation, fx);
      return;
    case CL_OWNED:
      if (v->owner == s)
        {
          fx_owner (fx, v, 0); /* already its: say so again */
          return;
        }
      if (v->def.exclusive)
        return fx_error (fx, s, COW_E_BUSY, n,
                         "volume %s is exclusive and "
                         "owned by node %u; use cowctl migrate",
                         n, v->owner);
      if (v->bouncing || bounce_note (v, v->owner, s, m->time_ms))
        return fx_error (fx, s, COW_E_BOUNCING, n,
                         "volume %s is bouncing "
                         "between nodes %u and %u: two running consumers? "
                         "(stopped; use cowctl migrate)",
                         n, v->bounce_a, v->bounce_b);
      ask_owner (v, s, fx);
      return;
    case CL_HANDING_OFF:
      if (v->requester != s)
        fx_error (fx, s, COW_E_BUSY, n,
                  "volume %s is being handed to "
                  "node %u already",
                  n, v->requester);
      return;
    case CL_FENCING:
      fx_error (fx, s, COW_E_HELD, n,
                "volume %s waits for node %u to be "
                "fenced",
                n, v->fenced_node);
      return;
    }
}

/* Only the handoff that was asked for: the requester may have left or
 * been fenced meanwhile (the owner then asks for it back). */
static void
apply_handoff (struct cl_table *t, struct cluster_vol *v, uint32_t s,
               const struct cl_msg *m, const struct cl_effects *fx)
{
  if (v->owner != s || v->state != CL_HANDING_OFF || v->requester != m->node)
    return;
  v->generation = m->generation;
  set_owner (v, m->node, m->generation, fx);
}

/* The owner could not make the volume ready for the requester (the drain
 * or the clean mark failed on its storage): it keeps the volume, and the
 * requester is told why. */
static void
apply_handoff_refused (struct cl_table *t, struct cluster_vol *v, uint32_t s,
                       const struct cl_msg *m, const struct cl_effects *fx)
{
  if (v->owner != s || v->state != CL_HANDING_OFF || v->requester != m->node)
    return;
  v->state = CL_OWNED;
  v->requester = 0;
  /* No move happened: the request's count in the bounce window goes (a
   * requester that retries a failing owner is no second consumer). */
  if (v->bounce_count > 0
      && ((v->bounce_a == s && v->bounce_b == m->node)
          || (v->bounce_a == m->node && v->bounce_b == s)))
    v->bounce_count--;
  fx_error (fx, m->node, COW_E_HANDOFF_FAILED, v->def.name,
            "volume %s: node %u cannot hand it over: making it clean on its "
            "CoW device failed (%s); node %u keeps serving it",
            v->def.name, s, strerror ((int) m->error), s);
}

static void
apply_release (struct cl_table *t, struct cluster_vol *v, uint32_t s,
               const struct cl_msg *m, const struct cl_effects *fx)
{
  if (v->owner != s || v->state == CL_FENCING)
    return;
  v->generation = m->generation;
  bounce_clear (v);
  set_owner (v, v->state == CL_HANDING_OFF ? v->requester : 0, m->generation,
             fx);
}

static void
apply_migrate (struct cl_table *t, struct cluster_vol *v, uint32_t s,
               const struct cl_msg *m, const struct cl_effects *fx)
{
  bounce_clear (v);
  if (v->state == CL_UNOWNED)
    set_owner (v, m->node, v->generation, fx);
  else if (v->state != CL_FENCING && v->owner != m->node)
    ask_owner (v, m->node, fx);
}

static void
apply_undefine (struct cl_table *t, struct cluster_vol *v, uint32_t s,
                const struct cl_msg *m, const struct cl_effects *fx)
{
  if (v->state != CL_UNOWNED)
    return fx_error (fx, s, COW_E_ATTACHED, v->def.name,
                     "volume %s is "
                     "owned by node %u; detach it there before deleting it",
                     v->def.name,
                     v->state == CL_FENCING ? v->fenced_node : v->owner);
  if (fx->cb->on_define)
    fx->cb->on_define (fx->ud, &v->def, false);
  tbl_unindex (t, v);
  struct cluster_vol *last = &t->vols[--t->n];
  if (last != v)
    {
      tbl_unindex (t, last);
      *v = *last;
      if (tbl_index (t, v) < 0)
        abort (); /* the table must not diverge */
    }
}

/* Another volume than def's whose CoW device is named def->cow or has
 * its VPD identity, or NULL. */
static const struct cluster_vol *
cow_user (struct cl_table *t, const struct cluster_voldef *def)
{
  uintptr_t i = (uintptr_t) strmap_get (&tbl (t)->by_cow, def->cow);
  if (i && strcmp (t->vols[i - 1].def.name, def->name) != 0)
    return &t->vols[i - 1];
  i = def->cow_ident[0] ? (uintptr_t) strmap_get (&t->by_ident, def->cow_ident)
                        : 0;
  if (i && strcmp (t->vols[i - 1].def.name, def->name) != 0)
    return &t->vols[i - 1];
  return NULL;
}

/* A definition whose CoW device another volume names, or whose CoW LUN
 * has another volume's VPD identity (another portal, another name), is
 * refused: two nodes that created volumes on one device at once both
 * passed their local check, and the agreed order picks the first. */
static void
apply_define (struct cl_table *t, uint32_t sender, const struct cl_msg *m,
              const struct cl_effects *fx)
{
  const struct cluster_vol *u = cow_user (t, &m->def);
  if (u)
    return fx_error (fx, sender, COW_E_COW_IN_USE, m->def.name,
                     "volume %s: CoW device %s is "
                     "the CoW device of volume %s already; a CoW device "
                     "belongs to one volume",
                     m->def.name, m->def.cow, u->def.name);
  struct cluster_vol *v = cl_table_find (t, m->def.name);
  if (v)
    tbl_unindex (t, v); /* a redefinition: the CoW may change */
  else if (!(v = tbl_append (t)))
    abort (); /* the table must not diverge */
  v->def = m->def;
  v->generation = 0;
  if (tbl_index (t, v) < 0)
    abort ();
  if (fx->cb->on_define)
    fx->cb->on_define (fx->ud, &v->def, true);
}

void
cl_table_define_nth (struct cl_table *t, uint32_t sender,
                     const struct cl_msg *m, uint32_t i,
                     const struct cl_effects *fx)
{
  struct cl_msg d
      = { .type = CL_MSG_DEFINE, .time_ms = m->time_ms, .def = m->vols[i].def };
  apply_define (t, sender, &d, fx);
}

static void
apply_define_many (struct cl_table *t, uint32_t sender, const struct cl_msg *m,
                   const struct cl_effects *fx)
{
  for (uint32_t i = 0; i < m->nvols; i++)
    cl_table_define_nth (t, sender, m, i, fx);
}

/* FENCE_CONFIRM(n): an operator says node n is down; its volumes in
 * fencing are released.  FENCED(n): the sender removed n's keys from the
 * storage; every volume n owned is released, also when n is still a
 * member (a hung agent fenced by hand), and n's pending requests end. */
/* A handoff to node cannot happen any more (it is gone or fenced): the
 * owner keeps the volume. */
static void
drop_request (struct cluster_vol *v, uint32_t node)
{
  if (v->state == CL_HANDING_OFF && v->requester == node)
    {
      v->state = CL_OWNED;
      v->requester = 0;
    }
}

static void
apply_fenced (struct cl_table *t, uint32_t sender, const struct cl_msg *m,
              const struct cl_effects *fx)
{
  bool storage = m->type == CL_MSG_FENCED;
  for (size_t i = 0; i < t->n; i++)
    {
      struct cluster_vol *v = &t->vols[i];
      if (storage)
        drop_request (v, m->node);
      bool fencing = v->state == CL_FENCING && v->fenced_node == m->node;
      if (!fencing && !(storage && v->owner == m->node))
        continue;
      v->fenced_node = 0;
      v->generation = 0; /* unknown after a crash */
      set_owner (v, 0, 0, fx);
    }
  if (fx->cb->on_fenced)
    fx->cb->on_fenced (fx->ud, m->node, sender, storage);
}

/* Every message type has its row, so a new type cannot fall through
 * unnoticed (the static assertion counts them); NOP and the state
 * transfer are cpg.c's, not the table's, and have none.  Unknown types
 * never reach here: cl_msg_decode refuses them. */
static const struct
{
  void (*table) (struct cl_table *t, uint32_t s, const struct cl_msg *m,
                 const struct cl_effects *fx);
  vol_handler *vol;
} apply[CL_MSG_LAST + 1] = {
  [CL_MSG_NOP] = { NULL, NULL },
  [CL_MSG_DEFINE] = { apply_define, NULL },
  [CL_MSG_UNDEFINE] = { NULL, apply_undefine },
  [CL_MSG_ACQUIRE] = { NULL, apply_acquire },
  [CL_MSG_HANDOFF] = { NULL, apply_handoff },
  [CL_MSG_RELEASE] = { NULL, apply_release },
  [CL_MSG_MIGRATE] = { NULL, apply_migrate },
  [CL_MSG_FENCE_CONFIRM] = { apply_fenced, NULL },
  [CL_MSG_SYNC_MARK] = { NULL, NULL },
  [CL_MSG_SYNC_DATA] = { NULL, NULL },
  [CL_MSG_FENCED] = { apply_fenced, NULL },
  [CL_MSG_SYNC_PIECE] = { NULL, NULL },
  [CL_MSG_DEFINE_MANY] = { apply_define_many, NULL },
  [CL_MSG_SYNC_REQUEST] = { NULL, NULL },
  [CL_MSG_SYNC_HAVE] = { NULL, NULL },
  [CL_MSG_SYNC_STATES] = { NULL, NULL },
  [CL_MSG_HANDOFF_REFUSED] = { NULL, apply_handoff_refused },
};
_Static_assert(CL_MSG_LAST == CL_MSG_HANDOFF_REFUSED,
               "a new message type needs its row in apply[]");

void
cl_table_apply (struct cl_table *t, uint32_t sender, const struct cl_msg *m,
                const struct cl_effects *fx)
{
  if (m->type > CL_MSG_LAST)
    return;
  if (apply[m->type].table)
    return apply[m->type].table (t, sender, m, fx);
  if (!apply[m->type].vol)
    return;
  struct cluster_vol *v = cl_table_find (t, m->def.name);
  if (v)
    apply[m->type].vol (t, v, sender, m, fx);
  /* A delete of a volume the table lacks has nothing to do: its sender
   * asks whenever it deletes, even before its own definition of it came
   * back (own.c own_undefine). */
  else if (m->type != CL_MSG_UNDEFINE)
    fx_error (fx, sender, COW_E_NO_SUCH_VOLUME, m->def.name,
              "volume %s "
              "is not defined in the "
              "cluster",
              m->def.name);
}

/* A member left.  node_down: the node itself is gone (fence it); else
 * only its agent stopped, and keeps what it owned for its restart. */
void
cl_table_member_left (struct cl_table *t, uint32_t node, bool node_down,
                      const struct cl_effects *fx)
{
  for (size_t i = 0; i < t->n; i++)
    {
      struct cluster_vol *v = &t->vols[i];
      drop_request (v, node);
      if (!node_down || v->owner != node || v->state == CL_FENCING)
        continue;
      v->state = CL_FENCING;
      v->fenced_node = node;
      v->requester = 0;
      if (fx->cb->on_fencing)
        fx->cb->on_fencing (fx->ud, v->def.name, node);
    }
}
