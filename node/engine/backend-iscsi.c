/* SPDX-License-Identifier: GPL-2.0-or-later */
/* backend-iscsi.c: an iSCSI LUN through libiscsi's asynchronous API, on
 * cowd's qb_loop, so a host needs no kernel initiator at all.
 *
 * One long-lived session per LUN (a SCSI-3 registration belongs to the
 * session that made it).  The session's socket sits on the loop with the
 * events libiscsi asks for; a 250 ms timer also services it, which drives
 * libiscsi's timeouts and reconnects.
 *
 * Requests are split at the LUN's maximum transfer length into parts;
 * every part is a libiscsi task whose data goes straight to or from the
 * caller's buffer (an iovec, no copy).  Per part:
 *
 *   GOOD                        done
 *   UNIT ATTENTION              sent again at once (at most ISC_RETRIES
 *                               times): a reset (29/00), changed
 *                               parameters (2A/xx) or a preempted
 *                               reservation (2A/03) is not a data error
 *   NOT READY, LUN not there    sent again from the tick until the
 *   (ILLEGAL REQUEST 25/xx)     deadline (a target restarting)
 *   RESERVATION CONFLICT        -EACCES; the backend is FENCED
 *   ILLEGAL REQUEST             -EINVAL (UNMAP: disabled, -EOPNOTSUPP)
 *   anything else               -EIO
 *
 * Session loss (a socket error, a target restart): the context is thrown
 * away (its tasks come back CANCELLED and the parts are kept), a new one
 * logs in asynchronously, with backoff from 100 ms to 2 s, and every part
 * not yet completed is sent again; nothing completes GOOD unless the target
 * said so.  While the session is down the backend is RECONNECTING; parts
 * older than reconnect_deadline_ms fail with EIO and the backend is
 * DEGRADED until a login succeeds.  After every (re)login, on_login runs
 * before anything else is sent: fencing registers its key there, since a
 * registration belongs to the session.  Then the parts that waited are
 * sent again -- except writes (and unmaps) that may_write holds back,
 * asked in isc_send for every part.  When this host was fenced (the
 * backend FENCED, or may_write -EACCES) they fail with EACCES and never
 * reach the LUN.  When its lease is out (may_write -EAGAIN: a membership
 * change, corosync stalled, the group's table not here yet) they wait,
 * unsent, and go out once the lease is back (isc_tick asks every
 * ISC_LEASE_POLL_MS); a write that was in flight when the lease ran out is
 * not failed for it, nor one submitted meanwhile.  One that waits longer
 * than the deadline fails with EIO, the backend staying healthy.
 * (libiscsi's own reconnect is turned off: it gives no hook after the login.)
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include "cowlog.h"

#include "backend-iscsi.h"
#include "backend.h"
#include "loop.h"

#define ISC_RETRIES 8
#define ISC_TICK_MS 250
#define ISC_LEASE_POLL_MS 20 /* while a write waits for the lease */
#define ISC_LOGIN_TIMEOUT_MS 2000u
#define ISC_LATER 2 /* isc_sense_error: send again later */

enum isc_op
{
  ISC_READ,
  ISC_WRITE,
  ISC_FLUSH,
  ISC_UNMAP,
};

struct isc_parent
{
  bk_done_fn *done;
  void *opaque;
  unsigned parts;
  int err;
};

struct isc_part
{
  struct isc_part *prev, *next; /* in flight */
  struct isc_priv *ip;
  struct isc_parent *parent;
  enum isc_op op;
  unsigned char *buf;
  uint64_t lba;
  uint32_t nblocks;
  bool fua;
  int retries;
  bool later;      /* the LUN was not ready: isc_tick resends */
  bool lease_wait; /* a write held back while this host's lease is out */
  uint64_t start_ns;
  struct scsi_task *task;
  struct scsi_iovec iov;
  struct unmap_list ul;
};

struct isc_priv
{
  struct iscsi_context *ctx;
  char *portal, *target, *safe_url;
  int lun;
  uint32_t block_size;
  uint32_t max_xfer; /* bytes per task */
  bool unmap;
  int fd; /* registered on the loop, or -1 */
  int events;
  bool logged_in;
  bool connecting;     /* an async login is under way */
  uint64_t connect_ns; /* when it started */
  bool login_pending;  /* logged in; isc_login_deferred runs next */
  bool closed;         /* isc_close ran with deferred calls due */
  unsigned deferred;   /* isc_defer calls not yet run */
  bool resetting;      /* destroying a context: keep the parts */
  bool need_reset;     /* a task saw the session fail */
  unsigned backoff_ms;
  uint64_t retry_at_ns;
  uint64_t lost_at_ns; /* when the session went away */
  char *initiator, *chap_user, *chap_password;
  qb_loop_timer_handle timer;
  bool blocking_only; /* backend_opts: neither socket nor timer on the loop */
  struct isc_part *inflight;
  unsigned deadline_ms;
  void (*on_login) (struct backend *bk, void *opaque);
  void *on_login_opaque;
  void (*on_fenced) (struct backend *bk, void *opaque);
  int (*may_write) (struct backend *bk, void *opaque);
  struct backend *bk;
};

static void isc_update_poll (struct isc_priv *ip);
static void isc_priv_free (struct isc_priv *ip);
static int isc_send (struct isc_part *p);
static void isc_reset (struct isc_priv *ip, const char *why);
static int isc_write_refused (struct isc_priv *ip);

struct iscsi_context *
backend_iscsi_context (struct backend *bk)
{
  return ((struct isc_priv *) bk->priv)->ctx;
}

void
backend_iscsi_initiator (const char *configured, char *buf, size_t len)
{
  if (configured)
    {
      snprintf (buf, len, "%s", configured);
      return;
    }
  char host[64];
  gethostname (host, sizeof host);
  host[sizeof host - 1] = '\0';
  snprintf (buf, len, "iqn.2024-01.org.cowherd:%s", host);
}

int
backend_iscsi_lun (struct backend *bk)
{
  return ((struct isc_priv *) bk->priv)->lun;
}

/* --- completion --- */

static void
isc_unlink (struct isc_part *p)
{
  struct isc_priv *ip = p->ip;
  if (p->prev)
    p->prev->next = p->next;
  else if (ip->inflight == p)
    ip->inflight = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void
isc_part_done (struct isc_part *p, int err)
{
  struct isc_parent *par = p->parent;
  isc_unlink (p);
  if (err && !par->err)
    par->err = err;
  free (p);
  if (--par->parts == 0)
    {
      par->done (par->opaque, par->err);
      free (par);
    }
}

static int
isc_sense_error (struct isc_part *p, struct scsi_task *t)
{
  struct isc_priv *ip = p->ip;
  switch (t->sense.key)
    {
    case SCSI_SENSE_NOT_READY:
      return ISC_LATER;
    case SCSI_SENSE_UNIT_ATTENTION:
      if (p->retries++ < ISC_RETRIES)
        {
          if (p->retries == 1)
            qb_log (LOG_INFO, "iscsi: %s: %s (%s), retrying", ip->safe_url,
                    scsi_sense_key_str (t->sense.key),
                    scsi_sense_ascq_str (t->sense.ascq));
          return 1;
        }
      return -EIO;
    case SCSI_SENSE_ILLEGAL_REQUEST:
      if ((t->sense.ascq >> 8) == 0x25)
        return ISC_LATER; /* LUN not there (yet): a target restarting */
      if (p->op == ISC_UNMAP)
        {
          ip->unmap = false;
          return -EOPNOTSUPP;
        }
      return -EINVAL;
    case SCSI_SENSE_DATA_PROTECTION:
      return -EROFS;
    default:
      return -EIO;
    }
}

/* Calls from the main loop, outside libiscsi's callbacks.  A backend
 * closed meanwhile is freed by the last of them. */
static void
isc_defer (struct isc_priv *ip, void (*fn) (void *))
{
  ip->deferred++;
  if (cowd_defer (fn, ip) < 0)
    fn (ip);
}

static bool
isc_deferred_gone (struct isc_priv *ip)
{
  ip->deferred--;
  if (!ip->closed)
    return false;
  if (ip->deferred == 0)
    isc_priv_free (ip);
  return true;
}

/* Tell the owner of the backend. */
static void
isc_fenced_deferred (void *data)
{
  struct isc_priv *ip = data;
  if (!isc_deferred_gone (ip) && ip->on_fenced)
    ip->on_fenced (ip->bk, ip->on_login_opaque);
}

static void
isc_task_cb (struct iscsi_context *ctx, int status, void *data, void *opaque)
{
  struct isc_part *p = opaque;
  struct isc_priv *ip = p->ip;
  struct scsi_task *t = data;
  int err = 0;
  p->task = NULL;
  bool transport = status == SCSI_STATUS_ERROR
                   || status == SCSI_STATUS_CANCELLED
                   || status == SCSI_STATUS_TIMEOUT;
  if (ip->resetting || transport)
    {
      /* The session failed, not the command: keep the part for the next
       * session (the deadline bounds how long it waits). */
      if (t)
        scsi_free_scsi_task (t);
      if (transport && !ip->resetting)
        ip->need_reset = true;
      return;
    }
  if (status == SCSI_STATUS_GOOD)
    err = 0;
  else if (status == SCSI_STATUS_CHECK_CONDITION)
    err = isc_sense_error (p, t);
  else if (status == SCSI_STATUS_RESERVATION_CONFLICT)
    {
      if (ip->bk->health != BK_FENCED)
        {
          qb_log (LOG_ERR,
                  "iscsi: %s: write rejected: reservation conflict "
                  "(this host was fenced)",
                  ip->safe_url);
          if (ip->on_fenced)
            isc_defer (ip, isc_fenced_deferred);
        }
      ip->bk->health = BK_FENCED;
      err = -EACCES;
    }
  else
    err = -EIO; /* cancelled, timed out, session error */
  if (t)
    scsi_free_scsi_task (t);
  if (err == 1)
    {
      err = isc_send (p);
      if (err == 0)
        return;
    }
  if (err == ISC_LATER)
    {
      p->later = true; /* within the deadline, from isc_tick */
      return;
    }
  isc_part_done (p, err);
}

/* Hand one part to libiscsi. */
static int
isc_send (struct isc_part *p)
{
  struct isc_priv *ip = p->ip;
  struct scsi_task *t = NULL;
  uint32_t bs = ip->block_size;
  if (p->op == ISC_WRITE || p->op == ISC_UNMAP)
    {
      int refused = isc_write_refused (ip);
      if (refused == -EACCES)
        return refused;
      p->lease_wait = refused == -EAGAIN; /* isc_tick sends it later */
    }
  if (ip->connecting || !ip->logged_in || p->lease_wait)
    return 0; /* sent when the session (or the lease) is back */
  p->later = false;
  switch (p->op)
    {
    case ISC_READ:
      t = iscsi_read16_iov_task (ip->ctx, ip->lun, p->lba, p->nblocks * bs,
                                 (int) bs, 0, 0, 0, 0, 0, isc_task_cb, p,
                                 &p->iov, 1);
      break;
    case ISC_WRITE:
      t = iscsi_write16_iov_task (ip->ctx, ip->lun, p->lba, NULL,
                                  p->nblocks * bs, (int) bs, 0, 0, p->fua, 0, 0,
                                  isc_task_cb, p, &p->iov, 1);
      break;
    case ISC_FLUSH:
      t = iscsi_synchronizecache16_task (ip->ctx, ip->lun, 0, 0, 0, 0,
                                         isc_task_cb, p);
      break;
    case ISC_UNMAP:
      t = iscsi_unmap_task (ip->ctx, ip->lun, 0, 0, &p->ul, 1, isc_task_cb, p);
      break;
    }
  if (!t)
    return -ENOMEM;
  p->task = t;
  isc_update_poll (ip);
  return 0;
}

/* May writes go out now: 0, -EACCES (fenced: never), -EAGAIN (the lease
 * is out: later). */
static int
isc_write_refused (struct isc_priv *ip)
{
  if (ip->bk->health == BK_FENCED)
    return -EACCES;
  int r = ip->may_write ? ip->may_write (ip->bk, ip->on_login_opaque) : 0;
  return r == -EACCES || r == -EAGAIN ? r : 0;
}

static int
isc_submit (struct backend *bk, enum isc_op op, void *buf, uint64_t off,
            size_t len, unsigned flags, bk_done_fn *done, void *opaque)
{
  struct isc_priv *ip = bk->priv;
  if (bk->health == BK_DEGRADED)
    return -EIO;
  if ((off | len) % ip->block_size)
    return -EINVAL;
  struct isc_parent *par = calloc (1, sizeof *par);
  if (!par)
    return -ENOMEM;
  *par = (struct isc_parent){ done, opaque, 1, 0 };
  uint64_t step = op == ISC_READ || op == ISC_WRITE ? ip->max_xfer : len;
  uint64_t start = cowd_now_ns ();
  size_t pos = 0;
  do
    {
      size_t n = len - pos < step ? len - pos : step;
      struct isc_part *p = calloc (1, sizeof *p);
      if (!p)
        break;
      *p = (struct isc_part){ .ip = ip,
                              .parent = par,
                              .op = op,
                              .buf = (unsigned char *) buf + pos,
                              .lba = (off + pos) / ip->block_size,
                              .nblocks = (uint32_t) (n / ip->block_size),
                              .fua = flags & BK_FUA,
                              .start_ns = start };
      p->iov = (struct scsi_iovec){ .iov_base = p->buf, .iov_len = n };
      p->ul = (struct unmap_list){ p->lba, p->nblocks };
      p->next = ip->inflight;
      if (ip->inflight)
        ip->inflight->prev = p;
      ip->inflight = p;
      par->parts++;
      int r = isc_send (p);
      if (r < 0)
        {
          isc_unlink (p);
          free (p);
          par->parts--;
          par->err = r;
          break;
        }
      pos += n;
    }
  while (pos < len);
  /* The extra count held the parent while parts were being sent. */
  if (--par->parts == 0)
    {
      int err = par->err;
      free (par);
      return err ? err : -EIO;
    }
  return 0;
}

static int
isc_read (struct backend *bk, void *buf, uint64_t off, size_t len,
          bk_done_fn *done, void *opaque)
{
  return isc_submit (bk, ISC_READ, buf, off, len, 0, done, opaque);
}

static int
isc_write (struct backend *bk, const void *buf, uint64_t off, size_t len,
           unsigned flags, bk_done_fn *done, void *opaque)
{
  if (!bk->writable)
    return -EROFS;
  return isc_submit (bk, ISC_WRITE, (void *) buf, off, len, flags, done,
                     opaque);
}

static int
isc_flush (struct backend *bk, bk_done_fn *done, void *opaque)
{
  return isc_submit (bk, ISC_FLUSH, NULL, 0, 0, 0, done, opaque);
}

static int
isc_discard (struct backend *bk, uint64_t off, size_t len, bk_done_fn *done,
             void *opaque)
{
  struct isc_priv *ip = bk->priv;
  if (!ip->unmap)
    return -EOPNOTSUPP;
  return isc_submit (bk, ISC_UNMAP, NULL, off, len, 0, done, opaque);
}

/* --- the loop --- */

static int
isc_dispatch (int fd, int revents, void *data)
{
  struct isc_priv *ip = data;
  cowd_batch_begin (); /* the replies of these completions */
  int r = iscsi_service (ip->ctx, revents);
  cowd_batch_end ();
  if (ip->logged_in
      && (r < 0 || ip->need_reset || (revents & (POLLHUP | POLLERR))))
    isc_reset (ip, iscsi_get_error (ip->ctx));
  else if (!ip->connecting && !ip->logged_in && !ip->login_pending
           && ip->fd >= 0)
    {
      /* A failed login: wait for the timer's retry, off the loop. */
      cowd_io_poll_del (ip->fd);
      ip->fd = -1;
    }
  else
    isc_update_poll (ip);
  return 0;
}

/* Follow libiscsi: the socket changes with each context, the events with
 * what it has to send. */
static void
isc_update_poll (struct isc_priv *ip)
{
  int fd = iscsi_get_fd (ip->ctx);
  int ev = iscsi_which_events (ip->ctx);
  if (fd != ip->fd)
    {
      if (ip->fd >= 0)
        cowd_io_poll_del (ip->fd);
      ip->fd = -1;
      if (fd >= 0 && cowd_io_poll_add (fd, ev, ip, isc_dispatch) == 0)
        ip->fd = fd, ip->events = ev;
    }
  else if (fd >= 0 && ev != ip->events)
    {
      cowd_io_poll_mod (fd, ev, ip, isc_dispatch);
      ip->events = ev;
    }
}

/* A write held back for the lease, with the session up: send it if the
 * lease is back (1), keep it if not (0), fail it if this host was fenced
 * or the deadline passed (-1). */
static int
isc_lease_retry (struct isc_part *p, uint64_t now, uint64_t limit)
{
  struct isc_priv *ip = p->ip;
  if (now - p->start_ns >= limit)
    {
      qb_log (LOG_ERR,
              "iscsi: %s: a write waited %u ms for this host's lease: "
              "failing it with EIO",
              ip->safe_url, ip->deadline_ms);
      isc_part_done (p, -EIO);
      return -1;
    }
  int r = isc_send (p);
  if (r < 0)
    {
      if (r == -EACCES)
        qb_log (LOG_WARNING,
                "iscsi: %s: a write that waited for this host's lease was "
                "not sent: this host was fenced",
                ip->safe_url);
      isc_part_done (p, r);
      return -1;
    }
  return p->lease_wait ? 0 : 1;
}

/* Fail the parts that waited longer than the deadline; send again those
 * the LUN was not ready for, and the writes held back for the lease once
 * it is back.  True when a write still waits for the lease. */
static bool
isc_check_deadline (struct isc_priv *ip)
{
  uint64_t now = cowd_now_ns (),
           limit = (uint64_t) ip->deadline_ms * 1000000ull;
  bool expired = false, lease_wait = false;
  unsigned sent = 0;
  for (struct isc_part *p = ip->inflight, *next; p; p = next)
    {
      next = p->next;
      if (p->lease_wait && ip->logged_in)
        {
          int r = isc_lease_retry (p, now, limit);
          lease_wait |= r == 0;
          sent += r == 1;
          continue;
        }
      uint64_t since
          = p->start_ns > ip->lost_at_ns ? p->start_ns : ip->lost_at_ns;
      if (p->later && ip->logged_in && now - p->start_ns < limit)
        {
          if (isc_send (p) < 0) /* the LUN was not ready: try again */
            isc_part_done (p, -EIO);
          continue;
        }
      if (ip->logged_in && !p->later)
        continue;
      if (now - since < limit)
        continue;
      /* Past the deadline: with the session up, the LUN stayed not
       * ready (this part fails); without one, the backend degrades. */
      expired |= !ip->logged_in;
      isc_part_done (p, -EIO);
    }
  if (expired && ip->bk->health != BK_DEGRADED)
    {
      qb_log (LOG_ERR,
              "iscsi: %s: no session for %u ms: failing requests "
              "with EIO (volume degraded)",
              ip->safe_url, ip->deadline_ms);
      ip->bk->health = BK_DEGRADED;
    }
  if (sent)
    qb_log (LOG_NOTICE,
            "iscsi: %s: this host's lease is back: %u write(s) that "
            "waited for it went out",
            ip->safe_url, sent);
  return lease_wait;
}

static void
isc_tick (void *data)
{
  struct isc_priv *ip = data;
  if (ip->login_pending)
    ; /* isc_login_deferred is on its way */
  else if (!ip->connecting && !ip->logged_in
           && cowd_now_ns () >= ip->retry_at_ns)
    isc_reset (ip, NULL);
  else if (ip->connecting
           && cowd_now_ns () - ip->connect_ns
                  > ISC_LOGIN_TIMEOUT_MS * 1000000ull)
    isc_reset (ip, NULL); /* a login nobody answers: start over */
  else if ((iscsi_service (ip->ctx, 0) < 0 || ip->need_reset) && ip->logged_in)
    isc_reset (ip, iscsi_get_error (ip->ctx));
  else
    isc_update_poll (ip);
  bool lease_wait = isc_check_deadline (ip);
  qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW,
                     (uint64_t) (lease_wait ? ISC_LEASE_POLL_MS : ISC_TICK_MS)
                         * 1000000ull,
                     ip, isc_tick, &ip->timer);
}

/* A context with this host's settings; libiscsi's reconnect off. */
static struct iscsi_context *
isc_ctx_new (struct isc_priv *ip)
{
  struct iscsi_context *ctx = iscsi_create_context (ip->initiator);
  if (!ctx)
    return NULL;
  iscsi_set_targetname (ctx, ip->target);
  iscsi_set_session_type (ctx, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest (ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  iscsi_set_noautoreconnect (ctx, 1);
  if (ip->chap_user && ip->chap_password)
    iscsi_set_initiator_username_pwd (ctx, ip->chap_user, ip->chap_password);
  return ctx;
}

static void
isc_logged_in (struct isc_priv *ip)
{
  ip->logged_in = true;
  ip->backoff_ms = 100;
  if (ip->bk->health == BK_RECONNECTING || ip->bk->health == BK_DEGRADED)
    {
      qb_log (LOG_NOTICE, "iscsi: %s: session re-established", ip->safe_url);
      ip->bk->health = BK_HEALTHY;
    }
  if (ip->on_login)
    ip->on_login (ip->bk, ip->on_login_opaque);
  unsigned dropped = 0, waiting = 0;
  for (struct isc_part *p = ip->inflight, *next; p; p = next)
    {
      next = p->next;
      if (p->task)
        continue;
      int r = isc_send (p);
      dropped += r == -EACCES; /* a write, and this host was fenced */
      if (r < 0)
        isc_part_done (p, r == -EACCES ? r : -EIO);
      else
        waiting += p->lease_wait;
    }
  if (dropped)
    qb_log (LOG_WARNING,
            "iscsi: %s: %u write(s) that waited for the session "
            "were not sent: this host was fenced",
            ip->safe_url, dropped);
  if (waiting)
    qb_log (LOG_NOTICE,
            "iscsi: %s: %u write(s) that waited for the session wait "
            "for this host's lease, which is out",
            ip->safe_url, waiting);
}

static void
isc_login_deferred (void *data)
{
  struct isc_priv *ip = data;
  ip->login_pending = false;
  if (isc_deferred_gone (ip))
    return;
  isc_logged_in (ip);
  isc_update_poll (ip);
}

static void
isc_connect_cb (struct iscsi_context *ctx, int status, void *data, void *opaque)
{
  struct isc_priv *ip = opaque;
  ip->connecting = false;
  if (status == SCSI_STATUS_GOOD)
    {
      /* on_login sends commands of its own on this context and waits for
       * them: not from inside iscsi_service.  Nothing is sent until then. */
      ip->login_pending = true;
      isc_defer (ip, isc_login_deferred);
      return;
    }
  qb_log (LOG_DEBUG, "iscsi: %s: login failed: %s", ip->safe_url,
          iscsi_get_error (ctx));
  ip->retry_at_ns = cowd_now_ns () + (uint64_t) ip->backoff_ms * 1000000ull;
  ip->backoff_ms = ip->backoff_ms * 2 > 500 ? 500 : ip->backoff_ms * 2;
}

/* The session is gone (or never came back): a new context, a new login. */
static void
isc_reset (struct isc_priv *ip, const char *why)
{
  if (ip->logged_in && ip->bk->health == BK_HEALTHY)
    {
      qb_log (LOG_WARNING, "iscsi: %s: session lost (%s), reconnecting",
              ip->safe_url, why ? why : "no reply");
      ip->bk->health = BK_RECONNECTING;
    }
  if (ip->logged_in)
    ip->lost_at_ns = cowd_now_ns ();
  ip->logged_in = false;
  ip->need_reset = false;
  if (ip->fd >= 0)
    cowd_io_poll_del (ip->fd);
  ip->fd = -1;
  ip->resetting = true;
  iscsi_destroy_context (ip->ctx);
  ip->resetting = false;
  ip->ctx = isc_ctx_new (ip);
  if (ip->ctx
      && iscsi_full_connect_async (ip->ctx, ip->portal, ip->lun, isc_connect_cb,
                                   ip)
             == 0)
    ip->connecting = true, ip->connect_ns = cowd_now_ns ();
  else
    ip->retry_at_ns = cowd_now_ns () + 1000000000ull;
  if (ip->ctx)
    isc_update_poll (ip);
}

/* --- sync variants for setup --- */

static int
isc_status_errno (struct scsi_task *t)
{
  if (!t)
    return -EIO;
  int r = t->status == SCSI_STATUS_GOOD                   ? 0
          : t->status == SCSI_STATUS_RESERVATION_CONFLICT ? -EACCES
                                                          : -EIO;
  scsi_free_scsi_task (t);
  return r;
}

static int
isc_pread_sync (struct backend *bk, void *buf, uint64_t off, size_t len)
{
  struct isc_priv *ip = bk->priv;
  for (size_t pos = 0; pos < len; pos += ip->max_xfer)
    {
      size_t n = len - pos < ip->max_xfer ? len - pos : ip->max_xfer;
      struct scsi_task *t = iscsi_read16_sync (
          ip->ctx, ip->lun, (off + pos) / ip->block_size, (uint32_t) n,
          (int) ip->block_size, 0, 0, 0, 0, 0);
      if (t && t->status == SCSI_STATUS_GOOD)
        memcpy ((char *) buf + pos, t->datain.data, n);
      int r = isc_status_errno (t);
      if (r < 0)
        return r;
    }
  return 0;
}

static int
isc_pwrite_sync (struct backend *bk, const void *buf, uint64_t off, size_t len,
                 unsigned flags)
{
  struct isc_priv *ip = bk->priv;
  for (size_t pos = 0; pos < len; pos += ip->max_xfer)
    {
      size_t n = len - pos < ip->max_xfer ? len - pos : ip->max_xfer;
      int r = isc_status_errno (iscsi_write16_sync (
          ip->ctx, ip->lun, (off + pos) / ip->block_size,
          (unsigned char *) buf + pos, (uint32_t) n, (int) ip->block_size, 0, 0,
          (flags & BK_FUA) != 0, 0, 0));
      if (r < 0)
        return r;
    }
  return 0;
}

static int
isc_flush_sync (struct backend *bk)
{
  struct isc_priv *ip = bk->priv;
  return isc_status_errno (
      iscsi_synchronizecache16_sync (ip->ctx, ip->lun, 0, 0, 0, 0));
}

static void
isc_priv_free (struct isc_priv *ip)
{
  if (!ip)
    return;
  free (ip->portal);
  free (ip->target);
  free (ip->safe_url);
  free (ip->initiator);
  free (ip->chap_user);
  free (ip->chap_password);
  free (ip);
}

/* The session's socket and timer on the loop; sync calls from now on
 * wait as long as they take (libiscsi's timeout is per PDU, and the
 * loop's requests keep their own deadline). */
static void
isc_on_loop (struct isc_priv *ip)
{
  iscsi_set_timeout (ip->ctx, 0);
  isc_update_poll (ip);
  qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW,
                     (uint64_t) ISC_TICK_MS * 1000000ull, ip, isc_tick,
                     &ip->timer);
}

static int
isc_start_loop (struct backend *bk, char *err, size_t errlen)
{
  struct isc_priv *ip = bk->priv;
  (void) err, (void) errlen;
  if (!ip->blocking_only)
    return 0;
  ip->blocking_only = false;
  isc_logged_in (ip); /* on_login, on the loop */
  isc_on_loop (ip);
  return 0;
}

static void
isc_close (struct backend *bk)
{
  struct isc_priv *ip = bk->priv;
  /* A logout is a courtesy (the socket's close ends the session): a
   * target that answers nothing keeps the loop a second at most. */
  iscsi_set_timeout (ip->ctx, 1);
  if (!ip->blocking_only)
    qb_loop_timer_del (cowd_loop (), ip->timer);
  if (ip->fd >= 0)
    cowd_io_poll_del (ip->fd);
  while (ip->inflight)
    isc_part_done (ip->inflight, -EIO);
  iscsi_logout_sync (ip->ctx);
  iscsi_destroy_context (ip->ctx);
  ip->ctx = NULL;
  if (ip->deferred)
    ip->closed = true; /* the last deferred call frees it */
  else
    isc_priv_free (ip);
  free (bk->uri);
  free (bk);
}

/* Drop the session with a reset (SO_LINGER 0): data the kernel still
 * holds for the target, such as a write sent while the network was cut,
 * is discarded instead of delivered when the network comes back.  The
 * parts are kept and go out on the next session, writes only if
 * may_write allows them then. */
static void
isc_abort (struct backend *bk)
{
  struct isc_priv *ip = bk->priv;
  bool writes = false;
  for (struct isc_part *p = ip->inflight; p; p = p->next)
    writes |= p->task && (p->op == ISC_WRITE || p->op == ISC_UNMAP);
  int fd = iscsi_get_fd (ip->ctx);
  if (!writes || !ip->logged_in || fd < 0)
    return;
  struct linger lg = { .l_onoff = 1, .l_linger = 0 };
  setsockopt (fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  qb_log (LOG_WARNING,
          "iscsi: %s: dropping the session with writes in "
          "flight: this host may not write now",
          ip->safe_url);
  isc_reset (ip, "aborted");
}

static void
isc_give_up_deferred (void *data)
{
  struct isc_priv *ip = data;
  if (isc_deferred_gone (ip))
    return;
  unsigned n = 0;
  for (struct isc_part *p = ip->inflight, *next; p; p = next)
    {
      next = p->next;
      if (p->lease_wait)
        n++, isc_part_done (p, -EIO);
    }
  if (n)
    qb_log (LOG_WARNING,
            "iscsi: %s: %u write(s) that waited for this host's lease were "
            "not sent: the volume closes or this host was fenced",
            ip->safe_url, n);
}

/* The writes held back for the lease fail (from the loop: never inside the
 * engine's call, which comes only as a volume closes or is fenced). */
static void
isc_give_up (struct backend *bk)
{
  isc_defer (bk->priv, isc_give_up_deferred);
}

static const struct backend_ops isc_ops = {
  .name = "iscsi",
  .read = isc_read,
  .write = isc_write,
  .flush = isc_flush,
  .discard = isc_discard,
  .abort = isc_abort,
  .give_up = isc_give_up,
  .close = isc_close,
  .start_loop = isc_start_loop,
  .pread_sync = isc_pread_sync,
  .pwrite_sync = isc_pwrite_sync,
  .flush_sync = isc_flush_sync,
};

/* --- open --- */

/* iscsi://[user[%password]@]host[:port]/target-iqn/lun, and the same URL
 * without credentials for messages. */
static int
isc_parse_url (struct isc_priv *ip, const char *url, char **user,
               char **password, char *err, size_t errlen)
{
  const char *p = url + 8, *at = strchr (p, '@'), *slash;
  *user = *password = NULL;
  if (at && at < strchr (p, '/'))
    {
      char *cred = strndup (p, (size_t) (at - p)), *pct = strchr (cred, '%');
      if (pct)
        {
          *pct = '\0';
          *password = strdup (pct + 1);
        }
      *user = cred;
      p = at + 1;
    }
  slash = strchr (p, '/');
  const char *lunp = slash ? strrchr (slash + 1, '/') : NULL;
  char *end;
  if (!slash || !lunp || lunp == slash + 1)
    goto bad;
  ip->portal = strndup (p, (size_t) (slash - p));
  ip->target = strndup (slash + 1, (size_t) (lunp - slash - 1));
  errno = 0;
  long lun = strtol (lunp + 1, &end, 10);
  if (errno || *end || end == lunp + 1 || lun < 0 || lun > 16383)
    goto bad;
  ip->lun = (int) lun;
  if (!strchr (ip->portal, ':'))
    {
      char *pp;
      if (asprintf (&pp, "%s:3260", ip->portal) < 0)
        return -ENOMEM;
      free (ip->portal);
      ip->portal = pp;
    }
  if (asprintf (&ip->safe_url, "iscsi://%s/%s/%d", ip->portal, ip->target,
                ip->lun)
      < 0)
    return -ENOMEM;
  return 0;
bad:
  snprintf (err, errlen,
            "%s: not an iSCSI URL of the form "
            "iscsi://host[:port]/target-iqn/lun",
            url);
  return -EINVAL;
}

char *
backend_iscsi_uri (const char *url)
{
  if (strncmp (url, "iscsi://", 8) != 0)
    return NULL;
  struct isc_priv ip = { 0 };
  char *user, *password, err[256];
  int r = isc_parse_url (&ip, url, &user, &password, err, sizeof err);
  free (user);
  free (password);
  free (ip.portal);
  free (ip.target);
  if (r < 0)
    {
      free (ip.safe_url);
      return NULL;
    }
  return ip.safe_url;
}

/* The LUN's stable identity from VPD 0x83 (NAA, then EUI-64, then T10),
 * else its unit serial number (0x80). */
static void
isc_identity (struct isc_priv *ip, struct backend *bk)
{
  struct scsi_task *t = iscsi_inquiry_sync (
      ip->ctx, ip->lun, 1, SCSI_INQUIRY_PAGECODE_DEVICE_IDENTIFICATION, 255);
  struct scsi_inquiry_device_identification *di
      = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall (t) : NULL;
  static const struct
  {
    int type;
    const char *prefix;
  } pref[] = {
    { SCSI_DESIGNATOR_TYPE_NAA, "naa." },
    { SCSI_DESIGNATOR_TYPE_EUI_64, "eui." },
    { SCSI_DESIGNATOR_TYPE_T10_VENDORT_ID, "t10." },
  };
  for (int k = 0; di && k < 3 && !bk->ident[0]; k++)
    for (struct scsi_inquiry_device_designator *d = di->designators; d;
         d = d->next)
      {
        if ((int) d->designator_type != pref[k].type
            || d->association != SCSI_ASSOCIATION_LOGICAL_UNIT)
          continue;
        int n = snprintf (bk->ident, sizeof bk->ident, "%s", pref[k].prefix);
        for (int i = 0; i < d->designator_length && n < 120; i++)
          n += d->code_set == SCSI_CODESET_BINARY
                   ? snprintf (bk->ident + n, sizeof bk->ident - (size_t) n,
                               "%02x", (unsigned char) d->designator[i])
                   : snprintf (
                       bk->ident + n, sizeof bk->ident - (size_t) n, "%c",
                       d->designator[i] == ' ' ? '_' : d->designator[i]);
        break;
      }
  if (t)
    scsi_free_scsi_task (t);
  if (bk->ident[0])
    return;
  t = iscsi_inquiry_sync (ip->ctx, ip->lun, 1,
                          SCSI_INQUIRY_PAGECODE_UNIT_SERIAL_NUMBER, 255);
  struct scsi_inquiry_unit_serial_number *sn
      = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall (t) : NULL;
  snprintf (bk->ident, sizeof bk->ident, "serial.%s",
            sn && sn->usn ? sn->usn : "unknown");
  if (t)
    scsi_free_scsi_task (t);
}

static void
isc_limits (struct isc_priv *ip)
{
  ip->max_xfer = 1024 * 1024;
  struct scsi_task *t = iscsi_inquiry_sync (
      ip->ctx, ip->lun, 1, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS, 255);
  struct scsi_inquiry_block_limits *bl
      = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall (t) : NULL;
  if (bl && bl->max_xfer_len
      && (uint64_t) bl->max_xfer_len * ip->block_size < ip->max_xfer)
    ip->max_xfer = bl->max_xfer_len * ip->block_size;
  if (t)
    scsi_free_scsi_task (t);
  t = iscsi_inquiry_sync (ip->ctx, ip->lun, 1,
                          SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING,
                          255);
  struct scsi_inquiry_logical_block_provisioning *lbp
      = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall (t) : NULL;
  ip->unmap = lbp && lbp->lbpu;
  if (t)
    scsi_free_scsi_task (t);
}

/* One sentence for a failed login, from libiscsi's message. */
static void
isc_connect_error (struct isc_priv *ip, char *err, size_t errlen)
{
  char e[256];
  snprintf (e, sizeof e, "%s", iscsi_get_error (ip->ctx));
  e[strcspn (e, "\n")] = '\0';
  const char *why = "cannot log in";
  if (strstr (e, "LOGICAL_UNIT_NOT_SUPPORTED"))
    why = "the LUN does not exist on the target";
  else if (strstr (e, "uthentication") || strstr (e, "CHAP")
           || strstr (e, "(513)") || strstr (e, "(514)"))
    why = "login failed: CHAP authentication rejected";
  else if (strstr (e, "Target not found") || strstr (e, "(515)"))
    why = "login failed: no such target";
  else if (strstr (e, "connect") || strstr (e, "socket"))
    why = "cannot reach the portal";
  snprintf (err, errlen, "%s: %s (%s)", ip->safe_url, why, e);
}

int
backend_iscsi_open (const char *url, const struct backend_opts *opts,
                    struct backend **out, char *err, size_t errlen)
{
  struct isc_priv *ip = calloc (1, sizeof *ip);
  struct backend *bk = calloc (1, sizeof *bk);
  char *user = NULL, *password = NULL, iqn[256];
  int r = -ENOMEM;
  if (!ip || !bk)
    goto out_free;
  ip->fd = -1;
  ip->bk = bk;
  if ((r = isc_parse_url (ip, url, &user, &password, err, errlen)) < 0)
    goto out_free;
  backend_iscsi_initiator (opts->initiator_name, iqn, sizeof iqn);
  if (password)
    qb_log (LOG_WARNING,
            "iscsi: %s: the URL carries a CHAP password, which "
            "others can read in the process table; use [iscsi] chap-password "
            "in the configuration file",
            ip->safe_url);
  ip->initiator = strdup (iqn);
  ip->chap_user = strdup (user ? user : opts->chap_user ? opts->chap_user : "");
  ip->chap_password = strdup (password              ? password
                              : opts->chap_password ? opts->chap_password
                                                    : "");
  if (!*ip->chap_user || !*ip->chap_password)
    {
      free (ip->chap_user);
      free (ip->chap_password);
      ip->chap_user = ip->chap_password = NULL;
    }
  ip->backoff_ms = 100;
  ip->ctx = isc_ctx_new (ip);
  if (!ip->ctx)
    goto out_free;
  ip->deadline_ms
      = opts->reconnect_deadline_ms ? opts->reconnect_deadline_ms : 30000;
  /* The blocking calls of the open (and all of a backend for blocking
   * calls alone) give up after the reconnect deadline: a target that
   * accepts the connection and answers nothing (a frozen tgtd) kept them
   * waiting for ever.  The loop's own requests have their deadline.
   * libiscsi counts whole seconds of time(): a PDU sent late in a second
   * timed out in S - 1 and a bit (2.19 s of 3); one second more gives up
   * after the deadline, never before it, and at most a second late. */
  iscsi_set_timeout (ip->ctx, (int) ((ip->deadline_ms + 999) / 1000 + 1));
  if (iscsi_full_connect_sync (ip->ctx, ip->portal, ip->lun) != 0)
    {
      isc_connect_error (ip, err, errlen);
      r = -EIO;
      goto out_ctx;
    }
  struct scsi_task *t = iscsi_readcapacity16_sync (ip->ctx, ip->lun);
  struct scsi_readcapacity16 *rc
      = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall (t) : NULL;
  if (!rc || rc->block_length < 512 || rc->block_length > 4096)
    {
      snprintf (err, errlen,
                "%s: READ CAPACITY(16) failed or reported an "
                "unsupported block size",
                ip->safe_url);
      if (t)
        scsi_free_scsi_task (t);
      r = -EIO;
      goto out_ctx;
    }
  ip->block_size = rc->block_length;
  bk->size = (rc->returned_lba + 1) * rc->block_length;
  scsi_free_scsi_task (t);
  isc_limits (ip);
  isc_identity (ip, bk);
  ip->on_login = opts->on_login;
  ip->on_login_opaque = opts->on_login_opaque;
  ip->on_fenced = opts->on_fenced;
  ip->may_write = opts->may_write;
  bk->ops = &isc_ops;
  bk->uri = strdup (ip->safe_url);
  snprintf (bk->key, sizeof bk->key, "iscsi:%s", ip->safe_url);
  bk->align = ip->block_size;
  bk->writable = opts->writable;
  bk->priv = ip;
  ip->blocking_only = opts->blocking_only;
  if (ip->blocking_only && opts->loop_later)
    ip->logged_in = true; /* on_login: at isc_start_loop, on the loop */
  else
    isc_logged_in (ip);
  if (!ip->blocking_only)
    isc_on_loop (ip);
  qb_log (LOG_INFO,
          "iscsi: %s: %" PRIu64 " bytes, %u-byte blocks, %s, "
          "max transfer %u, unmap %s",
          ip->safe_url, bk->size, ip->block_size, bk->ident, ip->max_xfer,
          ip->unmap ? "yes" : "no");
  free (user);
  free (password);
  *out = bk;
  return 0;

out_ctx:
  iscsi_destroy_context (ip->ctx);
out_free:
  free (user);
  free (password);
  isc_priv_free (ip);
  free (bk);
  return r;
}
