/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-server.c: the daemon's end of the control channel (libqb IPC), the
 * way pacemaker's daemons serve their tools.  See ctl.h for the wire
 * format.  Each request becomes a struct ctl_req for the dispatch function
 * the program handed to ctl_server_start, called on the program's loop;
 * the reply may come later (a detach waits for its flush), so the request
 * holds a reference on its connection, and a reply to a client that has
 * gone away is dropped.  Only root may connect.
 *
 * libqb's side of the channel runs on a thread of its own ("cowd-ctl")
 * with a loop of its own (struct ctl_loop, an epoll set): accepting a
 * connection, setting up and tearing down its shared-memory rings (a zeroed,
 * faulted-in mapping, and an munmap that waits for every CPU to flush its TLB),
 * reading requests and writing answers.  On the program's loop, that was most
 * of the creating host's loop time while `cowctl create` ran once per volume
 * (bench/scale: its NBD p99 at 9 ms against 4 ms of a qemu-nbd beside it).  A
 * parsed request goes to the program's loop, and an answer back to the thread,
 * through a queue each (struct ctl_queue: a list under a mutex and an
 * eventfd that the other loop polls); only the thread calls libqb's ipcs
 * functions.
 *
 * Why not a qb_loop on the thread: libqb's timers count the ones that
 * expired in a static variable of the library (expired_timers in
 * lib/loop_timerlist.c, in 2.0.6 as in 2.0.10), which every qb_loop
 * resets at each turn.  With a second loop on another thread, a loop
 * could see its expired timer counted away, and then wait in epoll_wait
 * for its next timer or descriptor with that timer's work undone.  The
 * thread's own qb_loop lost the timer of a streamed answer that way and
 * waited with no timeout: its cowctl got nothing more until its
 * --timeout of 120 s (bench/scale 100,000, three times in 18 runs: a
 * stream found stopped at 262,016 of 24,677,792 bytes with its timer
 * "set", the thread in epoll_wait (-1)); cowd's own loop could lose its
 * timers the same way.  So one qb_loop runs in cowd, the program's.
 *
 * Answers to version 3 requests are streamed (ctl-frame.c): a struct
 * ctl_out holds the text and writes frames while libqb's response channel
 * takes them, at most CTL_PUMP_FRAMES in one callback; when the channel is
 * full (-EAGAIN) it tries again after CTL_RETRY_MS, so a slow or stopped
 * reader never blocks the thread.  A stream is dropped when its client
 * goes away (connection_closed) or has taken nothing for CTL_STALL_MS. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <qb/qbipcs.h>
#include "cowlog.h"
#include "cowmutex.h"
#include "cowthread.h"
#include "pidgone.h"

#include "byteorder.h"
#include "clock.h"
#include "ctl.h"

#define CTL_PUMP_FRAMES 8
#define CTL_RETRY_MS 1
#define CTL_STALL_MS 60000

struct ctl_req
{
  struct ctl_req *next; /* in a ctl_queue */
  qb_ipcs_connection_t *conn;
  uint32_t version; /* the request's: the answer's too */
  unsigned flags;
  int argc;
  char **argv;
  char *strings;
  /* The answer, on its way to the thread. */
  int status;
  char code[CTL_CODE_MAX + 1];
  struct strbuf text;
};

/* Requests for one loop, posted from the other: run takes each, on the
 * loop that polls efd. */
struct ctl_queue
{
  pthread_mutex_t mu;
  struct ctl_req *head, **tail;
  int efd;
  void (*run) (struct ctl_req *);
};

/* An answer being streamed; owned by the thread. */
struct ctl_out
{
  struct ctl_out *next;
  qb_ipcs_connection_t *conn; /* referenced until the stream ends */
  struct ctl_stream st;
  uint8_t *frame;       /* CTL_FRAME_MAX bytes */
  size_t flen;          /* a frame the channel has not taken yet */
  bool closed;          /* the client went away */
  uint64_t progress_ns; /* when a frame was last taken */
  uint64_t due_ns;      /* its next step, 0: none */
};

/* A descriptor the thread polls for libqb (or for the answers queue). */
struct ctl_fd
{
  struct ctl_fd *next;
  int fd;
  bool dead; /* deleted: freed after this turn's events */
  void *data;
  qb_ipcs_dispatch_fn_t fn;
};

struct ctl_job
{
  struct ctl_job *next;
  void *data;
  qb_loop_job_dispatch_fn fn;
};

/* The thread's loop: descriptors, jobs (run in the order added, at the
 * next turn), and the streams' steps (ctl_out.due_ns). */
static struct ctl_loop
{
  int ep; /* -1: none */
  struct ctl_fd *fds, *dead;
  struct ctl_job *jobs, **jtail;
  bool stop;
} T = { .ep = -1 };

static struct ctl_out *outs; /* streams under way */
static qb_ipcs_service_t *service;
static qb_loop_t *program;        /* the program's loop: requests go there */
static ctl_dispatch_fn *dispatch; /* the program's command table */
static pthread_t thread;
static bool running;              /* the thread runs */
static bool quit;                 /* under answers.mu: the thread must end */
static struct ctl_queue requests; /* to the program's loop */
static struct ctl_queue answers;  /* to the thread */

int
ctl_req_argc (const struct ctl_req *r)
{
  return r->argc;
}
char **
ctl_req_argv (const struct ctl_req *r)
{
  return r->argv;
}
unsigned
ctl_req_flags (const struct ctl_req *r)
{
  return r->flags;
}

static void
ctl_req_free (struct ctl_req *req)
{
  sb_free (&req->text);
  free (req->argv);
  free (req->strings);
  free (req);
}

/* A version 1 or 2 answer in one message; one too large for it becomes
 * an error that says so. */
static void
ctl_send_single (struct ctl_req *req, int status, const char *code,
                 const char *text)
{
  size_t clen = req->version >= 2 ? strlen (code) : 0;
  size_t head = sizeof (struct qb_ipc_response_header) + 8
                + (req->version >= 2 ? 4 : 0);
  size_t tlen = strlen (text) + 1;
  char big[200];
  int32_t room = qb_ipcs_connection_get_buffer_size (req->conn);
  if (room < 0 || head + clen + tlen > (size_t) room)
    {
      snprintf (big, sizeof big,
                "the reply (%zu bytes) is too large for "
                "a cowctl of control protocol version %u; use the cowctl "
                "of this cowd's release (version %u streams it)",
                tlen - 1, req->version, CTL_VERSION);
      text = big;
      tlen = strlen (text) + 1;
      status = CTL_EXIT_ERROR;
      code = cow_err_name (COW_E_INTERNAL);
      clen = req->version >= 2 ? strlen (code) : 0;
    }
  size_t size = head + clen + tlen;
  uint8_t *msg = malloc (size);
  if (msg)
    {
      struct qb_ipc_response_header h
          = { .id = CTL_MSG_COMMAND, .size = (int32_t) size, .error = 0 };
      memcpy (msg, &h, sizeof h);
      le32_put (msg + sizeof h, req->version);
      le32_put (msg + sizeof h + 4, (uint32_t) status);
      if (req->version >= 2)
        le32_put (msg + sizeof h + 8, (uint32_t) clen);
      memcpy (msg + head, code, clen);
      memcpy (msg + head + clen, text, tlen);
      ssize_t r = qb_ipcs_response_send (req->conn, msg, size);
      if (r < 0)
        qb_log (LOG_NOTICE,
                "ctl: an answer of %zu bytes to a cowctl was dropped: %s", size,
                strerror ((int) -r));
      free (msg);
    }
  qb_ipcs_connection_unref (req->conn);
}

static void
ctl_out_end (struct ctl_out *o)
{
  for (struct ctl_out **pp = &outs; *pp; pp = &(*pp)->next)
    if (*pp == o)
      {
        *pp = o->next;
        break;
      }
  qb_ipcs_connection_unref (o->conn);
  ctl_stream_free (&o->st);
  free (o->frame);
  free (o);
}

static void ctl_out_pump (void *data);

/* The stream's next step, after ns. */
static void
ctl_out_again (struct ctl_out *o, uint64_t ns)
{
  o->due_ns = clock_now_ns () + ns;
}

/* Send the pending frame: 1 taken, 0 the channel is full, -1 gone. */
static int
ctl_out_send (struct ctl_out *o)
{
  ssize_t r = qb_ipcs_response_send (o->conn, o->frame, o->flen);
  if (r == (ssize_t) o->flen)
    {
      o->flen = 0;
      o->progress_ns = clock_now_ns ();
      return 1;
    }
  if (r == -EAGAIN || r == -ENOBUFS || r == -ETIMEDOUT)
    return 0;
  /* A client gone is no news (connection_closed says so first). */
  qb_log (o->closed ? LOG_DEBUG : LOG_NOTICE,
          "ctl: an answer of %zu bytes to a cowctl was dropped after %zu: "
          "its control connection did not take a frame: %s",
          o->st.len, o->st.pos, strerror ((int) (r < 0 ? -r : EIO)));
  return -1;
}

static void
ctl_out_pump (void *data)
{
  struct ctl_out *o = data;
  o->due_ns = 0;
  for (int i = 0; i < CTL_PUMP_FRAMES; i++)
    {
      if (o->closed)
        return ctl_out_end (o);
      if (o->flen == 0 && (o->flen = ctl_stream_next (&o->st, o->frame)) == 0)
        return ctl_out_end (o);
      int r = ctl_out_send (o);
      if (r < 0)
        return ctl_out_end (o);
      if (r > 0)
        continue;
      if (clock_now_ns () - o->progress_ns > (uint64_t) CTL_STALL_MS * 1000000)
        {
          qb_log (LOG_NOTICE,
                  "ctl: an answer of %zu bytes to a cowctl was dropped after "
                  "%zu: the cowctl took nothing of it for %d s",
                  o->st.len, o->st.pos, CTL_STALL_MS / 1000);
          return ctl_out_end (o);
        }
      return ctl_out_again (o, CTL_RETRY_MS * 1000000ull);
    }
  /* The rest after the thread's other work. */
  ctl_out_again (o, 0);
}

/* A version 3 answer: start streaming it (req's connection reference
 * and text's buffer move to the stream). */
static void
ctl_send_stream (struct ctl_req *req, int status, const char *code,
                 struct strbuf *text)
{
  struct ctl_out *o = calloc (1, sizeof *o);
  if (!o || !(o->frame = malloc (CTL_FRAME_MAX)))
    {
      qb_log (LOG_ERR, "ctl: out of memory for a reply of %zu bytes",
              text->len);
      free (o);
      sb_free (text);
      qb_ipcs_connection_unref (req->conn);
      return;
    }
  ctl_stream_init_take (&o->st, status, code, text);
  o->conn = req->conn;
  o->progress_ns = clock_now_ns ();
  o->next = outs;
  outs = o;
  ctl_out_pump (o);
}

/* Send req's answer in the request's version, on the thread; free req. */
static void
ctl_answer (struct ctl_req *req)
{
  if (req->version >= 3)
    ctl_send_stream (req, req->status, req->code, &req->text);
  else
    ctl_send_single (req, req->status, req->code, sb_str (&req->text));
  ctl_req_free (req);
}

static void ctl_queue_post (struct ctl_queue *q, struct ctl_req *req);

/* Hand one answer, text's buffer moved, to the thread (from any thread);
 * after ctl_server_stop it is dropped. */
static void
ctl_send_sb (struct ctl_req *req, int status, const char *code,
             struct strbuf *text)
{
  req->status = status;
  snprintf (req->code, sizeof req->code, "%s", code);
  sb_move (&req->text, text);
  ctl_queue_post (&answers, req);
}

static void
ctl_send (struct ctl_req *req, int status, const char *code, const char *text)
{
  struct strbuf sb = STRBUF_INIT;
  sb_puts (&sb, text);
  ctl_send_sb (req, status, code, &sb);
}

void
ctl_reply_take (struct ctl_req *req, struct strbuf *text)
{
  ctl_send_sb (req, 0, "", text);
}

void
ctl_reply (struct ctl_req *req, int status, const char *text)
{
  if (status != 0)
    return ctl_reply_error (
        req, status == CTL_EXIT_USAGE ? COW_E_USAGE : COW_E_INTERNAL, text);
  ctl_send (req, 0, "", text);
}

void
ctl_reply_error (struct ctl_req *req, int code, const char *text)
{
  code = cow_err_code (code);
  ctl_send (req, code == COW_E_USAGE ? CTL_EXIT_USAGE : CTL_EXIT_ERROR,
            cow_err_name (code), text);
}

/* Parse the body after the request header; NULL when malformed. */
static struct ctl_req *
ctl_parse (const uint8_t *p, size_t len, uint32_t *vers, const char **why)
{
  uint32_t version = len >= 4 ? le32_get (p) : 0;
  if (len < 12 || version < CTL_VERSION_MIN || version > CTL_VERSION)
    {
      *why = "unsupported control protocol version (cowctl and cowd differ)";
      return NULL;
    }
  *vers = version;
  uint32_t argc = le32_get (p + 8);
  size_t slen = len - 12;
  if (argc == 0 || argc > CTL_ARGC_MAX || slen == 0 || p[len - 1] != '\0')
    {
      *why = "malformed request";
      return NULL;
    }
  struct ctl_req *r = calloc (1, sizeof *r);
  char *s = malloc (slen);
  char **argv = calloc (argc + 1, sizeof *argv);
  if (!r || !s || !argv)
    {
      free (r), free (s), free (argv);
      *why = "out of memory";
      return NULL;
    }
  memcpy (s, p + 12, slen);
  size_t pos = 0;
  for (uint32_t i = 0; i < argc; i++)
    {
      if (pos >= slen)
        {
          free (r), free (s), free (argv);
          *why = "malformed request (argument count)";
          return NULL;
        }
      argv[i] = s + pos;
      pos += strlen (s + pos) + 1;
    }
  r->version = version;
  r->flags = le32_get (p + 4);
  r->argc = (int) argc;
  r->argv = argv;
  r->strings = s;
  return r;
}

static int32_t
ctl_msg (qb_ipcs_connection_t *c, void *data, size_t size)
{
  const char *why = "malformed request";
  struct ctl_req *req = NULL;
  struct qb_ipc_request_header h;
  uint32_t version = CTL_VERSION_MIN;
  if (size >= sizeof h)
    {
      memcpy (&h, data, sizeof h);
      if (h.id == CTL_MSG_COMMAND && (size_t) h.size == size)
        req = ctl_parse ((const uint8_t *) data + sizeof h, size - sizeof h,
                         &version, &why);
    }
  qb_ipcs_connection_ref (c);
  if (!req)
    {
      struct ctl_req tmp = { .conn = c, .version = version };
      struct ctl_req *r = malloc (sizeof *r);
      if (!r)
        return 0;
      *r = tmp;
      ctl_reply_error (r, COW_E_USAGE, why);
      return 0;
    }
  req->conn = c;
  ctl_queue_post (&requests, req);
  return 0;
}

/* The client went away: its streams stop at their next step. */
static int32_t
ctl_closed (qb_ipcs_connection_t *c)
{
  for (struct ctl_out *o = outs; o; o = o->next)
    if (o->conn == c)
      o->closed = true;
  return 0;
}

static int32_t
ctl_accept (qb_ipcs_connection_t *c, uid_t uid, gid_t gid)
{
  return uid == 0 || uid == geteuid () ? 0 : -EPERM;
}

static int32_t
ctl_job_add (enum qb_loop_priority p, void *data, qb_loop_job_dispatch_fn fn)
{
  struct ctl_job *j = T.ep >= 0 ? malloc (sizeof *j) : NULL;
  if (!j)
    return T.ep >= 0 ? -ENOMEM : -ESHUTDOWN;
  *j = (struct ctl_job){ NULL, data, fn };
  *T.jtail = j;
  T.jtail = &j->next;
  return 0;
}

static int32_t ctl_poll_del (int32_t fd);

static struct ctl_fd *
ctl_fd_find (int32_t fd)
{
  for (struct ctl_fd *f = T.fds; f; f = f->next)
    if (f->fd == fd)
      return f;
  return NULL;
}

/* Poll's event bits are epoll's on Linux (POLLIN, POLLOUT, POLLERR,
 * POLLHUP), both ways. */
static int32_t
ctl_poll_ctl (int op, struct ctl_fd *f, int32_t events)
{
  struct epoll_event ev = { .events = (uint32_t) events, .data.ptr = f };
  return epoll_ctl (T.ep, op, f->fd, &ev) < 0 ? -errno : 0;
}

static int32_t
ctl_poll_add (enum qb_loop_priority p, int32_t fd, int32_t events, void *data,
              qb_ipcs_dispatch_fn_t fn)
{
  if (T.ep < 0)
    return -ESHUTDOWN;
  /* An entry of this number is of a descriptor closed unpolled. */
  bool stale = ctl_fd_find (fd) != NULL;
  if (stale)
    ctl_poll_del (fd);
  struct ctl_fd *f = malloc (sizeof *f);
  if (!f)
    return -ENOMEM;
  *f = (struct ctl_fd){ T.fds, fd, false, data, fn };
  int32_t r = ctl_poll_ctl (EPOLL_CTL_ADD, f, events);
  if (r == -EEXIST && stale)
    r = ctl_poll_ctl (EPOLL_CTL_MOD, f, events);
  if (r < 0)
    free (f);
  else
    T.fds = f;
  return r;
}

static int32_t
ctl_poll_mod (enum qb_loop_priority p, int32_t fd, int32_t events, void *data,
              qb_ipcs_dispatch_fn_t fn)
{
  struct ctl_fd *f = T.ep >= 0 ? ctl_fd_find (fd) : NULL;
  if (!f)
    return T.ep >= 0 ? -ENOENT : -ESHUTDOWN;
  f->data = data;
  f->fn = fn;
  return ctl_poll_ctl (EPOLL_CTL_MOD, f, events);
}

static int32_t
ctl_poll_del (int32_t fd)
{
  if (T.ep < 0)
    return -ESHUTDOWN;
  for (struct ctl_fd **pp = &T.fds; *pp; pp = &(*pp)->next)
    if ((*pp)->fd == fd)
      {
        struct ctl_fd *f = *pp;
        *pp = f->next;
        epoll_ctl (T.ep, EPOLL_CTL_DEL, fd, NULL);
        f->dead = true; /* its events of this turn are skipped */
        f->next = T.dead;
        T.dead = f;
        return 0;
      }
  return -ENOENT;
}

static void
ctl_jobs_free (struct ctl_job *j)
{
  for (struct ctl_job *next; j; j = next)
    {
      next = j->next;
      free (j);
    }
}

/* The descriptors deleted, once no event of theirs is left to look at. */
static void
ctl_dead_free (void)
{
  while (T.dead)
    {
      struct ctl_fd *f = T.dead;
      T.dead = f->next;
      free (f);
    }
}

/* How long the thread may wait: 0 with jobs, else until the first
 * stream's step, else for ever (-1). */
static int
ctl_loop_timeout (void)
{
  if (T.jobs)
    return 0;
  uint64_t first = 0;
  for (struct ctl_out *o = outs; o; o = o->next)
    if (o->due_ns && (!first || o->due_ns < first))
      first = o->due_ns;
  if (!first)
    return -1;
  uint64_t now = clock_now_ns ();
  return first <= now ? 0 : (int) ((first - now + 999999) / 1000000);
}

static void
ctl_loop_turn (void)
{
  struct epoll_event ev[16];
  int n = epoll_wait (T.ep, ev, 16, ctl_loop_timeout ());
  for (int i = 0; i < n && !T.stop; i++)
    {
      struct ctl_fd *f = ev[i].data.ptr;
      /* As a qb_loop: a dispatch that returns less than 0 ends the
       * descriptor's polling. */
      if (!f->dead && f->fn (f->fd, (int32_t) ev[i].events, f->data) < 0
          && !f->dead)
        ctl_poll_del (f->fd);
    }
  /* The jobs added so far; those they add wait for the next turn. */
  struct ctl_job *j = T.jobs;
  T.jobs = NULL;
  T.jtail = &T.jobs;
  while (j && !T.stop)
    {
      struct ctl_job *next = j->next;
      j->fn (j->data);
      free (j);
      j = next;
    }
  ctl_jobs_free (j); /* not run: the service is gone */
  uint64_t now = clock_now_ns ();
  for (struct ctl_out *o = outs, *next; o && !T.stop; o = next)
    {
      next = o->next; /* o's step may end o, and only o */
      if (o->due_ns && o->due_ns <= now)
        ctl_out_pump (o);
    }
  ctl_dead_free ();
}

static void
ctl_loop_close (void)
{
  while (T.fds)
    ctl_poll_del (T.fds->fd);
  ctl_dead_free ();
  ctl_jobs_free (T.jobs);
  T.jobs = NULL;
  T.jtail = &T.jobs;
  if (T.ep >= 0)
    close (T.ep);
  T.ep = -1;
}

/* --- the queues between the thread and the program's loop --- */

static int
ctl_queue_init (struct ctl_queue *q, void (*run) (struct ctl_req *))
{
  int r = cow_mutex_init (&q->mu, PTHREAD_MUTEX_NORMAL);
  if (r != 0)
    return -r;
  q->head = NULL;
  q->tail = &q->head;
  q->run = run;
  q->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (q->efd < 0)
    {
      r = -errno;
      pthread_mutex_destroy (&q->mu);
      return r;
    }
  return 0;
}

/* A request whose loop is gone (ctl_server_stop): its answer is not
 * sent.  Only one thread runs by then. */
static void
ctl_drop (struct ctl_req *req)
{
  qb_ipcs_connection_unref (req->conn);
  ctl_req_free (req);
}

static void
ctl_queue_post (struct ctl_queue *q, struct ctl_req *req)
{
  req->next = NULL;
  pthread_mutex_lock (&q->mu);
  bool open = q->efd >= 0;
  if (open)
    {
      *q->tail = req;
      q->tail = &req->next;
      eventfd_write (q->efd, 1);
    }
  pthread_mutex_unlock (&q->mu);
  if (!open)
    ctl_drop (req);
}

/* Take what was posted; true when the thread must end (answers only). */
static struct ctl_req *
ctl_queue_take (struct ctl_queue *q, bool *end)
{
  eventfd_t v;
  eventfd_read (q->efd, &v);
  pthread_mutex_lock (&q->mu);
  struct ctl_req *list = q->head;
  q->head = NULL;
  q->tail = &q->head;
  if (end)
    *end = quit;
  pthread_mutex_unlock (&q->mu);
  return list;
}

static int32_t
ctl_queue_ready (int32_t fd, int32_t revents, void *data)
{
  struct ctl_queue *q = data;
  bool end = false;
  struct ctl_req *list = ctl_queue_take (q, q == &answers ? &end : NULL);
  while (list)
    {
      struct ctl_req *next = list->next;
      q->run (list);
      list = next;
    }
  if (end)
    {
      while (outs)
        ctl_out_end (outs);
      qb_ipcs_destroy (service);
      service = NULL;
      T.stop = true;
    }
  return 0;
}

/* Close q and drop what is left in it (with one thread left). */
static void
ctl_queue_close (struct ctl_queue *q)
{
  if (q->efd < 0 && !q->head)
    return; /* never opened, or closed */
  pthread_mutex_lock (&q->mu);
  struct ctl_req *list = q->head;
  int fd = q->efd;
  q->head = NULL;
  q->tail = &q->head;
  q->efd = -1;
  pthread_mutex_unlock (&q->mu);
  if (fd >= 0)
    close (fd);
  while (list)
    {
      struct ctl_req *next = list->next;
      ctl_drop (list);
      list = next;
    }
}

static void
ctl_dispatch (struct ctl_req *req)
{
  dispatch (req);
}

static void *
ctl_thread (void *arg)
{
  (void) arg;
  while (!T.stop)
    ctl_loop_turn ();
  return NULL;
}

/* The shared memory of connections that an earlier server of service
 * name left: libqb keeps each connection's rings in a directory
 * /dev/shm/qb-SERVERPID-CLIENTPID-N-XXXXXX (qb-request-NAME-header,
 * -data, and the same for response and event: 3 MiB a connection here),
 * and removes it when either side closes it.  A cowd killed (or crashed)
 * with a cowctl connected leaves it for as long as the host runs; libqb's
 * attempt from the client's side, shortly after, removes the files but
 * leaves the directory when the server is slow to die, and nothing when
 * the client is gone too.  So, of the directories whose server is gone:
 * this service's files are removed, and the directory when nothing else
 * is in it and it held this service's files or its client is gone too (an
 * empty directory of a dead server and a dead client is no one's).  How
 * many directories were removed. */
static unsigned
ctl_sweep_shm (const char *name)
{
  DIR *d = opendir ("/dev/shm");
  unsigned n = 0;
  size_t nl = strlen (name);
  struct dirent *de;
  while (d && (de = readdir (d)))
    {
      int spid, cpid, used = 0;
      if (sscanf (de->d_name, "qb-%d-%d-%*d-%n", &spid, &cpid, &used) != 2
          || used == 0 || spid <= 1 || !cow_pid_gone (spid))
        continue;
      int sub = openat (dirfd (d), de->d_name,
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      DIR *sd = sub >= 0 ? fdopendir (sub) : NULL;
      if (!sd)
        {
          if (sub >= 0)
            close (sub);
          continue;
        }
      bool ours = false, others = false;
      struct dirent *f;
      while ((f = readdir (sd)))
        {
          if (strcmp (f->d_name, ".") == 0 || strcmp (f->d_name, "..") == 0)
            continue;
          /* qb-KIND-NAME-PART: this service's files. */
          const char *k = strncmp (f->d_name, "qb-", 3) == 0
                              ? strchr (f->d_name + 3, '-')
                              : NULL;
          if (k && strncmp (k + 1, name, nl) == 0 && k[1 + nl] == '-'
              && unlinkat (sub, f->d_name, 0) == 0)
            ours = true;
          else
            others = true;
        }
      closedir (sd);
      bool client_gone = cpid > 1 && cow_pid_gone (cpid);
      if (!others && (ours || client_gone)
          && unlinkat (dirfd (d), de->d_name, AT_REMOVEDIR) == 0)
        n++;
    }
  if (d)
    closedir (d);
  return n;
}

/* Undo what a start made before it failed. */
static void
ctl_start_undo (qb_loop_t *l)
{
  if (requests.efd >= 0)
    qb_loop_poll_del (l, requests.efd);
  ctl_loop_close ();
  ctl_queue_close (&requests);
  ctl_queue_close (&answers);
}

int
ctl_server_start (qb_loop_t *l, const char *run_dir, ctl_dispatch_fn *fn)
{
  static struct qb_ipcs_service_handlers sh = {
    .connection_accept = ctl_accept,
    .msg_process = ctl_msg,
    .connection_closed = ctl_closed,
  };
  static struct qb_ipcs_poll_handlers ph = {
    .job_add = ctl_job_add,
    .dispatch_add = ctl_poll_add,
    .dispatch_mod = ctl_poll_mod,
    .dispatch_del = ctl_poll_del,
  };
  dispatch = fn;
  program = l;
  quit = false;
  requests.efd = answers.efd = -1;
  T.stop = false;
  T.jobs = NULL;
  T.jtail = &T.jobs;
  T.ep = epoll_create1 (EPOLL_CLOEXEC);
  int r = T.ep < 0 ? -errno : 0;
  if (r < 0 || (r = ctl_queue_init (&requests, ctl_dispatch)) < 0
      || (r = ctl_queue_init (&answers, ctl_answer)) < 0
      || (r = qb_loop_poll_add (l, QB_LOOP_MED, requests.efd, POLLIN, &requests,
                                ctl_queue_ready))
             < 0
      || (r = ctl_poll_add (QB_LOOP_HIGH, answers.efd, POLLIN, &answers,
                            ctl_queue_ready))
             < 0)
    {
      qb_log (LOG_ERR, "ctl: cannot set up the control channel's thread: %s",
              strerror (-r));
      ctl_start_undo (l);
      return -1;
    }
  char name[64];
  ctl_service_name (run_dir, name, sizeof name);
  service = qb_ipcs_create (name, 0, QB_IPC_NATIVE, &sh);
  if (!service)
    {
      qb_log (LOG_ERR, "ctl: cannot create the control service %s", name);
      ctl_start_undo (l);
      return -1;
    }
  qb_ipcs_poll_handlers_set (service, &ph);
  qb_ipcs_enforce_buffer_size (service, CTL_CONN_MIN);
  r = qb_ipcs_run (service);
  if (r < 0)
    {
      qb_log (LOG_ERR,
              "ctl: cannot start the control service %s for run "
              "directory %s: %s%s",
              name, run_dir, strerror (-r),
              r == -EADDRINUSE ? " (another cowd serves this run directory,"
                                 " though its pid file is gone)"
                               : "");
      /* A failed qb_ipcs_run has released the service already. */
      service = NULL;
      ctl_start_undo (l);
      return -1;
    }
  /* After qb_ipcs_run: no other live server has this name. Before the
   * thread: no request is answered until the sweep is done and said. */
  unsigned swept = ctl_sweep_shm (name);
  if (swept)
    qb_log (LOG_NOTICE,
            "ctl: removed the shared memory of %u control connection(s) "
            "that an earlier cowd of run directory %s left in /dev/shm",
            swept, run_dir);
  /* Signals go to the program's threads, not this one. */
  sigset_t all, old;
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  r = cow_thread_create (&thread, false, ctl_thread, NULL);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (r != 0)
    {
      qb_log (LOG_ERR, "ctl: cannot start the control channel's thread: %s",
              strerror (r));
      qb_ipcs_destroy (service);
      service = NULL;
      ctl_start_undo (l);
      return -1;
    }
  pthread_setname_np (thread, "cowd-ctl");
  running = true;
  qb_log (LOG_INFO, "ctl: listening as %s", name);
  return 0;
}

/* The thread ends its streams, closes the service and returns; requests
 * not dispatched yet, and answers given from now on, are dropped. */
void
ctl_server_stop (void)
{
  if (!running)
    return;
  pthread_mutex_lock (&answers.mu);
  quit = true;
  eventfd_write (answers.efd, 1);
  pthread_mutex_unlock (&answers.mu);
  pthread_join (thread, NULL);
  running = false;
  ctl_start_undo (program);
}
