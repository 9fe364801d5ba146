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

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "clock.h"
#include "loop.h"

static qb_loop_t *engine_loop; /* set once, before any open */

/* The descriptors of I/O (cowd_io_poll_add), watched a second time in an
 * epoll set of their own that is only ever asked, never waited on: is any
 * of them ready now?  -1 until the first.  Only reading is watched there;
 * io_fds has each descriptor's IO_IN (in the set) and IO_OUT (it has
 * something to send: libiscsi's queued PDUs, an NBD reply behind a full
 * socket), and io_writers counts the IO_OUTs.  A change of POLLOUT alone,
 * which libiscsi makes about twice per request, so costs no system call. */
static int io_epfd = -1;
static uint64_t io_yields;
enum
{
  IO_IN = 1,
  IO_OUT = 2,
};
static unsigned char *io_fds;
static size_t io_fds_len;
static unsigned io_writers;

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

/* io_fds[fd], grown to hold fd; NULL when out of memory. */
static unsigned char *
io_state (int fd)
{
  if ((size_t) fd >= io_fds_len)
    {
      size_t n = io_fds_len ? io_fds_len : 64;
      while (n <= (size_t) fd)
        n *= 2;
      unsigned char *p = realloc (io_fds, n);
      if (!p)
        return NULL;
      memset (p + io_fds_len, 0, n - io_fds_len);
      io_fds = p, io_fds_len = n;
    }
  return &io_fds[fd];
}

#define IO_LOOK_NS 50000ull
static uint64_t io_quiet_until; /* cowd_io_waiting's last "no", until */

/* The set follows events: fd is in it while it reads (IO_IN) and counted
 * in io_writers while it sends (IO_OUT).  Without memory or an epoll set,
 * nothing yields to I/O: slower, not wrong. */
static void
io_watch (int fd, int32_t events)
{
  if (io_epfd < 0)
    io_epfd = epoll_create1 (EPOLL_CLOEXEC);
  unsigned char *st = fd >= 0 ? io_state (fd) : NULL;
  if (io_epfd < 0 || !st)
    return;
  unsigned char want
      = (events & POLLIN ? IO_IN : 0) | (events & POLLOUT ? IO_OUT : 0);
  if ((*st ^ want) & IO_OUT)
    io_writers += want & IO_OUT ? 1u : -1u;
  if ((*st ^ want) & IO_IN)
    {
      struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
      io_quiet_until = 0;
      if (want & IO_IN)
        {
          if (epoll_ctl (io_epfd, EPOLL_CTL_ADD, fd, &ev) < 0
              && errno == EEXIST)
            (void) epoll_ctl (io_epfd, EPOLL_CTL_MOD, fd, &ev);
        }
      else
        (void) epoll_ctl (io_epfd, EPOLL_CTL_DEL, fd, &ev);
    }
  *st = want;
}

/* The loop's add or mod (op), then the same in the set. */
static int
io_poll (int op, int fd, int32_t events, void *data,
         qb_loop_poll_dispatch_fn fn)
{
  int r = (op == EPOLL_CTL_ADD ? qb_loop_poll_add : qb_loop_poll_mod) (
      engine_loop, QB_LOOP_HIGH, fd, events, data, fn);
  if (r == 0)
    io_watch (fd, events);
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

/* Every descriptor added is deleted before it is closed (the NBD server,
 * the backends), so io_fds never holds a closed one. */
int
cowd_io_poll_del (int fd)
{
  io_watch (fd, 0);
  return qb_loop_poll_del (engine_loop, fd);
}

/* A look at the descriptors is a system call (epoll_wait), 2-5 us on
 * this virtual machine: made after every definition of a DEFINE_MANY
 * and every few keys, looks were a tenth of a receiving host's loop
 * (perf, bench/scale 10,000).  So a look that found nothing stands for
 * IO_LOOK_NS of the clock (read without a system call), or until the set
 * changes (io_watch): a request waits at most that much longer for a
 * slice of work to end. */
bool
cowd_io_waiting (void)
{
  if (!io_writers)
    {
      struct epoll_event ev;
      uint64_t now = clock_now_ns ();
      if (now < io_quiet_until)
        return false;
      if (io_epfd < 0 || epoll_wait (io_epfd, &ev, 1, 0) <= 0)
        {
          io_quiet_until = now + IO_LOOK_NS;
          return false;
        }
    }
  io_yields++;
  return true;
}

uint64_t
cowd_io_yields (void)
{
  return io_yields;
}
