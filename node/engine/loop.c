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
#include <sys/epoll.h>

#include "loop.h"

static qb_loop_t *engine_loop; /* set once, before any open */

/* The descriptors of I/O (cowd_io_poll_add), watched a second time in an
 * epoll set of their own that is only ever asked, never waited on: is any
 * of them ready now?  -1 until the first. */
static int io_epfd = -1;
static uint64_t io_yields;

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

/* --- I/O that waits --- */

static void
io_watch (int op, int fd, int32_t events)
{
  if (io_epfd < 0)
    io_epfd = epoll_create1 (EPOLL_CLOEXEC);
  if (io_epfd < 0)
    return; /* then nothing yields to I/O: slower, not wrong */
  struct epoll_event ev = {
    .events = (uint32_t) events & (EPOLLIN | EPOLLOUT),
    .data.fd = fd,
  };
  /* A descriptor closed without a del left the set by itself, and its
   * number may come back for another: add and mod each do the other. */
  if (epoll_ctl (io_epfd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
    (void) epoll_ctl (
        io_epfd, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
}

/* The loop's add or mod (op), then the same in the set. */
static int
io_poll (int op, int fd, int32_t events, void *data,
         qb_loop_poll_dispatch_fn fn)
{
  int r = (op == EPOLL_CTL_ADD ? qb_loop_poll_add : qb_loop_poll_mod) (
      engine_loop, QB_LOOP_HIGH, fd, events, data, fn);
  if (r == 0)
    io_watch (op, fd, events);
  return r;
}

int
cowd_io_poll_add (int fd, int32_t events, void *data,
                  qb_loop_poll_dispatch_fn fn)
{
  return io_poll (EPOLL_CTL_ADD, fd, events, data, fn);
}

int
cowd_io_poll_mod (int fd, int32_t events, void *data,
                  qb_loop_poll_dispatch_fn fn)
{
  return io_poll (EPOLL_CTL_MOD, fd, events, data, fn);
}

int
cowd_io_poll_del (int fd)
{
  io_watch (EPOLL_CTL_DEL, fd, 0);
  return qb_loop_poll_del (engine_loop, fd);
}

bool
cowd_io_waiting (void)
{
  struct epoll_event ev;
  if (io_epfd < 0 || epoll_wait (io_epfd, &ev, 1, 0) <= 0)
    return false;
  io_yields++;
  return true;
}

uint64_t
cowd_io_yields (void)
{
  return io_yields;
}
