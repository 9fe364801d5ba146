/* SPDX-License-Identifier: GPL-2.0-or-later */
/* loop.c: the engine's one event loop.
 *
 * The engine (backends, volumes, defer and batches) and the NBD server run
 * on one libqb qb_loop, single-threaded, as corosync runs everything on
 * its own.  The program that links the engine creates the loop and hands
 * it over once with cowd_loop_set() before opening anything; every room
 * of the engine asks for it with cowd_loop().  Libraries outside the
 * engine (cluster/, node/ctl/) are handed the loop as a parameter instead.
 */
#include <config.h>

#include <stddef.h>

#include "loop.h"

static qb_loop_t *engine_loop; /* set once, before any open */

qb_loop_t *
cowd_loop (void)
{
  return engine_loop;
}

void
cowd_loop_set (qb_loop_t *l)
{
  engine_loop = l;
}

static void
cowd_timer_fire (void *opaque)
{
  struct cowd_timer *t = opaque;
  t->armed = false;
  t->fn (t->data);
}

int
cowd_timer_arm (struct cowd_timer *t, uint64_t delay_ns,
                void (*fn) (void *data), void *data)
{
  if (t->armed)
    return 0;
  t->fn = fn;
  t->data = data;
  if (qb_loop_timer_add (engine_loop, QB_LOOP_LOW, delay_ns, t, cowd_timer_fire,
                         &t->handle)
      != 0)
    return -1;
  t->armed = true;
  return 0;
}

void
cowd_timer_stop (struct cowd_timer *t)
{
  if (t->armed)
    qb_loop_timer_del (engine_loop, t->handle);
  t->armed = false;
}
