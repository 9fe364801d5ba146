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

static qb_loop_t *engine_loop;      /* set once, before any open */

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
