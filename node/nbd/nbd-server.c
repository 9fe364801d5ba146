/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbd-server.c: cowd's NBD server.
 *
 * One listening unix socket (mode 0600) per volume; every connection is a
 * non-blocking socket on cowd's qb_loop.  A connection goes through
 *
 *   HS_FLAGS    waiting for the client's 4 flag bytes
 *   OPTIONS     fixed-newstyle option haggling (GO/INFO/LIST/ABORT,
 *               EXPORT_NAME, STRUCTURED_REPLY, LIST/SET_META_CONTEXT)
 *   TRANSMIT    requests, many in flight, replies in completion order
 *   CLOSING     no more reading; closed once replies are flushed
 *
 * Input is read in gulps of up to 4096 bytes (many request headers per
 * read) and copied to where it belongs: headers into a small buffer, write
 * payloads into a 4096-aligned buffer the engine can hand to O_DIRECT as
 * is; a payload of 4096 bytes or more is read straight into its buffer.
 * Output is a queue of replies; the replies of one loop dispatch go out
 * together in one writev at its end (cowd_batch_*); a full socket turns
 * on POLLOUT.  At most NBD_MAX_INFLIGHT requests (and
 * NBD_MAX_INFLIGHT_BYTES of buffers) per connection are in the engine;
 * past that the connection stops reading.
 *
 * Lifetime: a connection holds one reference for its socket and one per
 * request in the engine.  A client that disconnects mid-request only
 * drops the socket reference; engine completions still find the
 * connection and free it with the last reference.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "cowlog.h"

#include "lograte.h"
#include "loop.h"
#include "nbd-proto.h"
#include "nbd-server.h"
#include "volume.h"

#define NBD_MAX_OPTION 4096u
#define NBD_MAX_REQUEST (32u * 1024 * 1024)
#define NBD_MAX_INFLIGHT 64u
#define NBD_MAX_INFLIGHT_BYTES (64u * 1024 * 1024)
#define NBD_MAX_EXTENTS 1024u
#define NBD_HANDSHAKE_TIMEOUT_MS 30000u /* default; cowd.conf may set it */
#define NBD_ACCEPT_BACKOFF_MS 100u
#define CTX_ALLOCATION 1u
#define CTX_COW 2u

enum conn_state
{
  HS_FLAGS,
  OPTIONS,
  TRANSMIT,
  CLOSING,
};

struct obuf
{
  struct obuf *next;
  uint8_t hdr[32];
  size_t hlen;
  void *data; /* freed once sent */
  size_t dlen;
  size_t pos; /* bytes of hdr + data already sent */
};

struct nbd_conn
{
  struct nbd_conn *next;
  struct nbd_export *exp;
  int fd;
  enum conn_state state;
  unsigned refs;
  bool dead; /* socket closed; waiting for the engine */
  bool no_zeroes, structured;
  uint32_t contexts; /* CTX_* selected by SET_META_CONTEXT */
  int32_t events;    /* what we poll for now */
  /* Input */
  uint8_t hdr[NBD_MAX_OPTION + 32];
  uint8_t *rtarget;
  size_t rpos, rneed;
  uint8_t in[4096];  /* read ahead of rtarget */
  uint32_t skip_opt; /* bytes of a too long option still to skip */
  size_t in_pos, in_len;
  bool read_sched;               /* conn_read_cb is deferred */
  struct nbd_req *pending_write; /* header parsed, payload being read */
  /* Output */
  struct obuf *out_head, *out_tail;
  bool send_sched;  /* a send waits for the batch's end */
  size_t out_bytes; /* queued for the socket */
  /* Flow control */
  unsigned inflight;
  size_t inflight_bytes;
  /* Handshake deadline (nbd_set_handshake_timeout), until transmission */
  struct cowd_timer hs_timer;
};

struct nbd_req
{
  struct nbd_conn *conn;
  uint64_t cookie;
  uint16_t type, flags;
  uint64_t off;
  uint32_t len;
  void *buf;
};

struct nbd_export
{
  struct volume *vol;
  char *path;
  int lfd;
  struct nbd_conn *conns;
  unsigned nconns;
  /* Out of descriptors: the listener rests until the timer */
  struct cowd_timer accept_timer; /* pending: the listener rests */
  struct lograte accept_lr;
};

static unsigned nbd_handshake_timeout_ms = NBD_HANDSHAKE_TIMEOUT_MS;

void
nbd_set_handshake_timeout (unsigned ms)
{
  nbd_handshake_timeout_ms = ms ? ms : NBD_HANDSHAKE_TIMEOUT_MS;
}

static int conn_dispatch (int fd, int revents, void *data);
static void conn_close (struct nbd_conn *c, const char *why);
static void conn_unref (struct nbd_conn *c);
static void conn_kick (struct nbd_conn *c);

/* Past this many requests in the engine, or bytes in the engine and in
 * replies the client has not read yet, stop reading its requests. */
static bool
conn_throttled (const struct nbd_conn *c)
{
  return c->inflight >= NBD_MAX_INFLIGHT
         || c->inflight_bytes + c->out_bytes >= NBD_MAX_INFLIGHT_BYTES;
}

/* --- output --- */

static void
conn_set_events (struct nbd_conn *c)
{
  if (c->dead)
    return;
  int32_t ev = 0;
  if (c->state != CLOSING && !conn_throttled (c))
    ev |= POLLIN;
  if (c->out_head && !c->send_sched)
    ev |= POLLOUT;
  if (ev != c->events)
    {
      c->events = ev;
      cowd_io_poll_mod (c->fd, ev, c, conn_dispatch);
    }
}

static void
obuf_free (struct obuf *o)
{
  free (o->data);
  free (o);
}

/* Write as much of the queue as the socket takes, many replies per
 * writev. */
static int
conn_flush_out (struct nbd_conn *c)
{
  enum
  {
    MAX_IOV = 64
  };
  while (c->out_head)
    {
      struct iovec iov[MAX_IOV];
      int n = 0;
      for (struct obuf *o = c->out_head; o && n + 2 <= MAX_IOV; o = o->next)
        {
          if (o->pos < o->hlen)
            iov[n++] = (struct iovec){ o->hdr + o->pos, o->hlen - o->pos };
          size_t dpos = o->pos > o->hlen ? o->pos - o->hlen : 0;
          if (o->dlen > dpos)
            iov[n++]
                = (struct iovec){ (char *) o->data + dpos, o->dlen - dpos };
        }
      ssize_t r = n ? writev (c->fd, iov, n) : 0;
      if (r < 0)
        {
          if (errno == EAGAIN || errno == EINTR)
            return 0;
          return -errno;
        }
      /* Retire what went out whole; the rest starts at its pos. */
      size_t sent = (size_t) r;
      while (c->out_head)
        {
          struct obuf *o = c->out_head;
          size_t left = o->hlen + o->dlen - o->pos;
          if (sent < left)
            {
              o->pos += sent;
              break;
            }
          sent -= left;
          c->out_bytes -= o->hlen + o->dlen;
          c->out_head = o->next;
          if (!c->out_head)
            c->out_tail = NULL;
          obuf_free (o);
        }
      if (n == 0)
        break;
    }
  return 0;
}

/* Send what is queued; a CLOSING connection with nothing left closes. */
static void
conn_send (struct nbd_conn *c)
{
  if (conn_flush_out (c) < 0)
    {
      conn_close (c, "client went away");
      return;
    }
  if (c->state == CLOSING && !c->out_head && c->inflight == 0)
    {
      conn_close (c, NULL);
      return;
    }
  conn_kick (c); /* replies left: requests read ahead go on */
  conn_set_events (c);
}

static void
conn_send_cb (void *data)
{
  struct nbd_conn *c = data;
  c->send_sched = false;
  if (!c->dead)
    conn_send (c);
  conn_unref (c);
}

static void
conn_queue (struct nbd_conn *c, struct obuf *o)
{
  if (c->dead)
    {
      obuf_free (o);
      return;
    }
  o->next = NULL;
  c->out_bytes += o->hlen + o->dlen;
  if (c->out_tail)
    c->out_tail->next = o;
  else
    c->out_head = o;
  c->out_tail = o;
  /* The replies of one loop dispatch go out together, at its end. */
  if (!c->send_sched)
    {
      c->send_sched = true;
      c->refs++;
      cowd_at_batch_end (conn_send_cb, c);
    }
}

static struct obuf *
obuf_new (size_t hlen, void *data, size_t dlen)
{
  struct obuf *o = calloc (1, sizeof *o);
  if (!o)
    abort ();
  o->hlen = hlen;
  o->data = data;
  o->dlen = dlen;
  return o;
}

/* Option reply: IHAVEOPT-style header plus payload. */
static void
opt_reply (struct nbd_conn *c, uint32_t opt, uint32_t type, const void *p,
           size_t len)
{
  void *copy = len ? malloc (len) : NULL;
  if (len && !copy)
    abort ();
  if (len)
    memcpy (copy, p, len);
  struct obuf *o = obuf_new (20, copy, len);
  be64_put (o->hdr, NBD_REP_MAGIC);
  be32_put (o->hdr + 8, opt);
  be32_put (o->hdr + 12, type);
  be32_put (o->hdr + 16, (uint32_t) len);
  conn_queue (c, o);
}

static uint32_t
nbd_errno (int err)
{
  switch (-err)
    {
    case EPERM:
    case EROFS:
      return NBD_EPERM;
    case ENOMEM:
      return NBD_ENOMEM;
    case EINVAL:
      return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return NBD_ENOSPC;
    case EOVERFLOW:
      return NBD_EOVERFLOW;
    case ENOTSUP:
      return NBD_ENOTSUP;
    case ESHUTDOWN:
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
    }
}

/* The reply to a request: simple or structured, error or not.  For a
 * successful read, data (len bytes) is handed over and freed once sent. */
static void
req_reply (struct nbd_conn *c, uint64_t cookie, uint64_t off, int err,
           void *data, size_t len)
{
  struct obuf *o;
  if (!c->structured)
    {
      o = obuf_new (16, err ? NULL : data, err ? 0 : len);
      be32_put (o->hdr, NBD_SIMPLE_REPLY_MAGIC);
      be32_put (o->hdr + 4, err ? nbd_errno (err) : 0);
      be64_put (o->hdr + 8, cookie);
    }
  else if (err)
    {
      o = obuf_new (26, NULL, 0);
      be32_put (o->hdr, NBD_STRUCTURED_REPLY_MAGIC);
      be16_put (o->hdr + 4, NBD_REPLY_FLAG_DONE);
      be16_put (o->hdr + 6, NBD_REPLY_TYPE_ERROR);
      be64_put (o->hdr + 8, cookie);
      be32_put (o->hdr + 16, 6);
      be32_put (o->hdr + 20, nbd_errno (err));
      be16_put (o->hdr + 24, 0);
    }
  else if (data)
    {
      o = obuf_new (28, data, len);
      be32_put (o->hdr, NBD_STRUCTURED_REPLY_MAGIC);
      be16_put (o->hdr + 4, NBD_REPLY_FLAG_DONE);
      be16_put (o->hdr + 6, NBD_REPLY_TYPE_OFFSET_DATA);
      be64_put (o->hdr + 8, cookie);
      be32_put (o->hdr + 16, (uint32_t) (8 + len));
      be64_put (o->hdr + 20, off);
    }
  else
    {
      o = obuf_new (20, NULL, 0);
      be32_put (o->hdr, NBD_STRUCTURED_REPLY_MAGIC);
      be16_put (o->hdr + 4, NBD_REPLY_FLAG_DONE);
      be16_put (o->hdr + 6, NBD_REPLY_TYPE_NONE);
      be64_put (o->hdr + 8, cookie);
      be32_put (o->hdr + 16, 0);
    }
  if (err)
    free (data);
  conn_queue (c, o);
}

/* --- connection lifetime --- */

static void
conn_unref (struct nbd_conn *c)
{
  if (--c->refs > 0)
    return;
  struct nbd_export *e = c->exp;
  if (e)
    {
      for (struct nbd_conn **p = &e->conns; *p; p = &(*p)->next)
        if (*p == c)
          {
            *p = c->next;
            break;
          }
      e->nconns--;
    }
  free (c);
}

static void
conn_handshake_expired (void *data)
{
  struct nbd_conn *c = data;
  char why[96];
  snprintf (why, sizeof why,
            "dropping the client: no export chosen "
            "within %u ms of connecting",
            nbd_handshake_timeout_ms);
  conn_close (c, why);
}

static void
conn_close (struct nbd_conn *c, const char *why)
{
  if (c->dead)
    return;
  if (why && c->exp)
    qb_log (LOG_INFO, "nbd: %s: %s%s", vol_name (c->exp->vol), why,
            c->inflight ? " with requests in flight" : "");
  c->dead = true;
  cowd_timer_stop (&c->hs_timer);
  cowd_io_poll_del (c->fd);
  close (c->fd);
  while (c->out_head)
    {
      struct obuf *o = c->out_head;
      c->out_head = o->next;
      obuf_free (o);
    }
  c->out_tail = NULL;
  c->out_bytes = 0;
  if (c->pending_write)
    {
      free (c->pending_write->buf);
      free (c->pending_write);
      c->pending_write = NULL;
    }
  conn_unref (c);
}

static void
conn_expect (struct nbd_conn *c, void *target, size_t need)
{
  c->rtarget = target;
  c->rpos = 0;
  c->rneed = need;
}

/* --- transmission --- */

static void
req_done (void *opaque, int res)
{
  struct nbd_req *r = opaque;
  struct nbd_conn *c = r->conn;
  c->inflight--;
  c->inflight_bytes -= r->len;
  conn_kick (c);
  if (!c->dead)
    {
      bool read = r->type == NBD_CMD_READ;
      req_reply (c, r->cookie, r->off, res, read ? r->buf : NULL,
                 read ? r->len : 0);
      if (read)
        r->buf = NULL;
      if (!c->dead)
        {
          if (c->state == CLOSING && c->inflight == 0 && !c->out_head)
            conn_close (c, NULL);
          else
            conn_set_events (c);
        }
    }
  free (r->buf);
  free (r);
  conn_unref (c);
}

static void
req_block_status (struct nbd_conn *c, struct nbd_req *r)
{
  struct volume *v = c->exp->vol;
  unsigned ids[2] = { CTX_ALLOCATION, CTX_COW }, sent = 0, want = 0;
  for (int i = 0; i < 2; i++)
    want += (c->contexts & ids[i]) != 0;
  struct vol_extent *ext = calloc (NBD_MAX_EXTENTS, sizeof *ext);
  if (!ext)
    abort ();
  for (int i = 0; i < 2; i++)
    {
      if (!(c->contexts & ids[i]))
        continue;
      size_t max = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_EXTENTS;
      size_t n = vol_block_status (
          v, ids[i] == CTX_COW ? VOL_CTX_COW : VOL_CTX_ALLOCATION, r->off,
          r->len, ext, max);
      uint8_t *p = malloc (4 + 8 * n);
      if (!p)
        abort ();
      be32_put (p, ids[i]);
      for (size_t k = 0; k < n; k++)
        {
          be32_put (p + 4 + 8 * k, (uint32_t) ext[k].length);
          be32_put (p + 8 + 8 * k, ext[k].flags);
        }
      struct obuf *o = obuf_new (20, p, 4 + 8 * n);
      be32_put (o->hdr, NBD_STRUCTURED_REPLY_MAGIC);
      be16_put (o->hdr + 4, ++sent == want ? NBD_REPLY_FLAG_DONE : 0);
      be16_put (o->hdr + 6, NBD_REPLY_TYPE_BLOCK_STATUS);
      be64_put (o->hdr + 8, r->cookie);
      be32_put (o->hdr + 16, (uint32_t) (4 + 8 * n));
      conn_queue (c, o);
      if (c->dead)
        break;
    }
  free (ext);
}

/* The flags a command may carry here: FUA on any (the spec lets a client
 * set it on every command once SEND_FUA is advertised), DF on READ with
 * structured replies, NO_HOLE on WRITE_ZEROES, REQ_ONE on BLOCK_STATUS.
 * FAST_ZERO is not advertised.  Anything else gets EINVAL. */
static uint16_t
req_allowed_flags (const struct nbd_conn *c, uint16_t type)
{
  uint16_t ok = NBD_CMD_FLAG_FUA;
  if (type == NBD_CMD_READ && c->structured)
    ok |= NBD_CMD_FLAG_DF;
  else if (type == NBD_CMD_WRITE_ZEROES)
    ok |= NBD_CMD_FLAG_NO_HOLE;
  else if (type == NBD_CMD_BLOCK_STATUS)
    ok |= NBD_CMD_FLAG_REQ_ONE;
  return ok;
}

/* Check a request; 0 or a negative errno for the error reply. */
static int
req_check (struct nbd_conn *c, struct nbd_req *r)
{
  struct volume *v = c->exp->vol;
  uint64_t size = vol_size (v);
  bool write = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM
               || r->type == NBD_CMD_WRITE_ZEROES;
  if (r->flags & ~req_allowed_flags (c, r->type))
    return -EINVAL;
  if (r->type == NBD_CMD_FLUSH) /* offset and length must be zero */
    return r->len || r->off ? -EINVAL : 0;
  if (r->len == 0 || r->off > size || r->len > size - r->off)
    return -EINVAL;
  if (write && !vol_can_write (v))
    return -EPERM;
  if (r->type == NBD_CMD_BLOCK_STATUS && (!c->structured || !c->contexts))
    return -EINVAL;
  return 0;
}

static void
req_submit (struct nbd_conn *c, struct nbd_req *r)
{
  struct volume *v = c->exp->vol;
  int err = req_check (c, r);
  unsigned vflags = r->flags & NBD_CMD_FLAG_FUA ? VOL_FUA : 0;
  /* Block status is answered from the in-memory bitmap: not by a host
   * that was fenced or whose lease ran out (it may be stale). */
  if (err == 0 && r->type == NBD_CMD_BLOCK_STATUS && !vol_serving (v)
      && vol_get_state (v) != VOL_STATE_READONLY)
    err = -EIO;
  if (err == 0 && r->type == NBD_CMD_BLOCK_STATUS)
    {
      req_block_status (c, r);
      free (r);
      return;
    }
  if (err == 0)
    {
      c->refs++;
      c->inflight++;
      c->inflight_bytes += r->len;
      switch (r->type)
        {
        case NBD_CMD_READ:
          err = vol_read (v, r->buf, r->off, r->len, req_done, r);
          break;
        case NBD_CMD_WRITE:
          err = vol_write (v, r->buf, r->off, r->len, vflags, req_done, r);
          break;
        case NBD_CMD_FLUSH:
          err = vol_flush (v, req_done, r);
          break;
        case NBD_CMD_TRIM:
          err = vol_trim (v, r->off, r->len, vflags, req_done, r);
          break;
        case NBD_CMD_WRITE_ZEROES:
          err = vol_write_zeroes (
              v, r->off, r->len,
              vflags | (r->flags & NBD_CMD_FLAG_NO_HOLE ? VOL_NO_HOLE : 0),
              req_done, r);
          break;
        default:
          err = -EINVAL;
        }
      if (err == 0)
        return;
      c->inflight--;
      c->inflight_bytes -= r->len;
      c->refs--;
    }
  req_reply (c, r->cookie, r->off, err, NULL, 0);
  free (r->buf);
  free (r);
}

/* A 28-byte request header has arrived. */
static int
req_header (struct nbd_conn *c)
{
  const uint8_t *h = c->hdr;
  if (be32_get (h) != NBD_REQUEST_MAGIC)
    return -EPROTO;
  struct nbd_req *r = calloc (1, sizeof *r);
  if (!r)
    return -ENOMEM;
  r->conn = c;
  r->flags = be16_get (h + 4);
  r->type = be16_get (h + 6);
  r->cookie = be64_get (h + 8);
  r->off = be64_get (h + 16);
  r->len = be32_get (h + 24);
  if (r->type == NBD_CMD_DISC)
    {
      free (r);
      c->state = CLOSING;
      if (c->inflight == 0 && !c->out_head)
        conn_close (c, NULL);
      return 0;
    }
  bool data_in = r->type == NBD_CMD_WRITE, data_out = r->type == NBD_CMD_READ;
  if ((data_in || data_out) && r->len > NBD_MAX_REQUEST)
    {
      if (data_in)
        {
          free (r);
          return -EFBIG; /* cannot skip the payload safely */
        }
      req_reply (c, r->cookie, r->off, -EOVERFLOW, NULL, 0);
      free (r);
      conn_expect (c, c->hdr, 28);
      return 0;
    }
  if (data_in && r->len == 0)
    data_in = false; /* no payload: EINVAL at once (req_check) */
  if ((data_in || data_out)
      && posix_memalign (&r->buf, 4096, r->len ? r->len : 1) != 0)
    {
      free (r);
      return -ENOMEM;
    }
  if (data_in)
    {
      c->pending_write = r;
      conn_expect (c, r->buf, r->len);
      return 0;
    }
  req_submit (c, r);
  conn_expect (c, c->hdr, 28);
  return 0;
}

/* --- handshake and options --- */

static uint16_t
export_flags (struct nbd_conn *c)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA
               | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES
               | NBD_FLAG_CAN_MULTI_CONN;
  if (c->structured)
    f |= NBD_FLAG_SEND_DF;
  if (!vol_can_write (c->exp->vol))
    f |= NBD_FLAG_READ_ONLY;
  return f;
}

static bool
name_ok (struct nbd_conn *c, const uint8_t *name, uint32_t len)
{
  const char *vn = vol_name (c->exp->vol);
  return len == 0 || (len == strlen (vn) && memcmp (name, vn, len) == 0);
}

static void
enter_transmission (struct nbd_conn *c)
{
  c->state = TRANSMIT;
  cowd_timer_stop (&c->hs_timer);
  conn_expect (c, c->hdr, 28);
  qb_log (LOG_DEBUG, "nbd: %s: client connected%s", vol_name (c->exp->vol),
          c->structured ? " (structured replies)" : "");
}

static int
opt_export_name (struct nbd_conn *c, const uint8_t *d, uint32_t len)
{
  if (!name_ok (c, d, len))
    return -ENOENT; /* the protocol says: just disconnect */
  size_t n = c->no_zeroes ? 10 : 134;
  uint8_t *p = calloc (1, n);
  if (!p)
    return -ENOMEM;
  be64_put (p, vol_size (c->exp->vol));
  be16_put (p + 8, export_flags (c));
  struct obuf *o = obuf_new (0, p, n);
  conn_queue (c, o);
  enter_transmission (c);
  return 0;
}

static void
info_reply (struct nbd_conn *c, uint32_t opt, uint16_t type)
{
  uint8_t buf[256];
  size_t n = 2;
  const char *name = vol_name (c->exp->vol);
  be16_put (buf, type);
  switch (type)
    {
    case NBD_INFO_EXPORT:
      be64_put (buf + 2, vol_size (c->exp->vol));
      be16_put (buf + 10, export_flags (c));
      n = 12;
      break;
    case NBD_INFO_NAME:
    case NBD_INFO_DESCRIPTION:
      n += (size_t) snprintf ((char *) buf + 2, sizeof buf - 2, "%s%s",
                              type == NBD_INFO_NAME ? "" : "cowherd volume ",
                              name);
      break;
    case NBD_INFO_BLOCK_SIZE:
      be32_put (buf + 2, 1);
      be32_put (buf + 6, vol_chunk_size (c->exp->vol) < 4096
                             ? 4096
                             : vol_chunk_size (c->exp->vol));
      be32_put (buf + 10, NBD_MAX_REQUEST);
      n = 14;
      break;
    default:
      return;
    }
  opt_reply (c, opt, NBD_REP_INFO, buf, n);
}

static void
opt_info (struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  uint32_t nlen = len >= 4 ? be32_get (d) : 0;
  if (len < 6 || nlen > len - 6 || (len - 6 - nlen) % 2
      || be16_get (d + 4 + nlen) * 2u != len - 6 - nlen)
    {
      opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0);
      return;
    }
  if (!name_ok (c, d + 4, nlen))
    {
      opt_reply (c, opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
      return;
    }
  uint16_t n = be16_get (d + 4 + nlen);
  info_reply (c, opt, NBD_INFO_EXPORT);
  for (uint16_t i = 0; i < n; i++)
    {
      uint16_t t = be16_get (d + 6 + nlen + 2 * i);
      if (t != NBD_INFO_EXPORT)
        info_reply (c, opt, t);
    }
  opt_reply (c, opt, NBD_REP_ACK, NULL, 0);
  if (opt == NBD_OPT_GO && !c->dead)
    enter_transmission (c);
}

static void
meta_reply (struct nbd_conn *c, uint32_t opt, uint32_t id, const char *name)
{
  uint8_t buf[64];
  size_t n = strlen (name);
  be32_put (buf, id);
  memcpy (buf + 4, name, n);
  opt_reply (c, opt, NBD_REP_META_CONTEXT, buf, 4 + n);
}

/* Which of our contexts does a query select? */
static uint32_t
meta_match (const uint8_t *q, uint32_t qlen, bool list)
{
  static const struct
  {
    const char *name, *ns;
    uint32_t id;
  } ctx[] = {
    { "base:allocation", "base:", CTX_ALLOCATION },
    { "cowherd:cow", "cowherd:", CTX_COW },
  };
  uint32_t m = 0;
  for (int i = 0; i < 2; i++)
    {
      size_t n = strlen (ctx[i].name), ns = strlen (ctx[i].ns);
      if ((qlen == n && memcmp (q, ctx[i].name, n) == 0)
          || (list && qlen == ns && memcmp (q, ctx[i].ns, ns) == 0))
        m |= ctx[i].id;
    }
  return m;
}

static void
opt_meta (struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  bool list = opt == NBD_OPT_LIST_META_CONTEXT;
  uint32_t nlen = len >= 4 ? be32_get (d) : 0, pos, sel = 0;
  if (len < 8 || nlen > len - 8)
    return opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0);
  if (!list && !c->structured)
    return opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0);
  if (!name_ok (c, d + 4, nlen))
    return opt_reply (c, opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
  uint32_t nq = be32_get (d + 4 + nlen);
  pos = 8 + nlen;
  for (uint32_t i = 0; i < nq; i++)
    {
      if (len - pos < 4 || be32_get (d + pos) > len - pos - 4)
        return opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0);
      uint32_t ql = be32_get (d + pos);
      sel |= meta_match (d + pos + 4, ql, list);
      pos += 4 + ql;
    }
  if (pos != len)
    return opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0);
  if (list && nq == 0)
    sel = CTX_ALLOCATION | CTX_COW;
  if (sel & CTX_ALLOCATION)
    meta_reply (c, opt, CTX_ALLOCATION, "base:allocation");
  if (sel & CTX_COW)
    meta_reply (c, opt, CTX_COW, "cowherd:cow");
  if (!list)
    c->contexts = sel;
  opt_reply (c, opt, NBD_REP_ACK, NULL, 0);
}

static int
opt_handle (struct nbd_conn *c)
{
  uint32_t opt = be32_get (c->hdr + 8), len = be32_get (c->hdr + 12);
  const uint8_t *d = c->hdr + 16;
  switch (opt)
    {
    case NBD_OPT_EXPORT_NAME:
      return opt_export_name (c, d, len);
    case NBD_OPT_ABORT:
      opt_reply (c, opt, NBD_REP_ACK, NULL, 0);
      c->state = CLOSING;
      if (!c->dead && !c->out_head)
        conn_close (c, NULL);
      return 0;
    case NBD_OPT_LIST:
      {
        if (len)
          return opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0), 0;
        const char *n = vol_name (c->exp->vol);
        uint8_t buf[80];
        be32_put (buf, (uint32_t) strlen (n));
        memcpy (buf + 4, n, strlen (n));
        opt_reply (c, opt, NBD_REP_SERVER, buf, 4 + strlen (n));
        opt_reply (c, opt, NBD_REP_ACK, NULL, 0);
        return 0;
      }
    case NBD_OPT_STARTTLS:
      opt_reply (c, opt, NBD_REP_ERR_POLICY, NULL, 0);
      return 0;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      opt_info (c, opt, d, len);
      return 0;
    case NBD_OPT_STRUCTURED_REPLY:
      if (len)
        return opt_reply (c, opt, NBD_REP_ERR_INVALID, NULL, 0), 0;
      c->structured = true;
      opt_reply (c, opt, NBD_REP_ACK, NULL, 0);
      return 0;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      opt_meta (c, opt, d, len);
      return 0;
    default:
      opt_reply (c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
      return 0;
    }
}

/* A piece of an option too long to hold has been read and dropped: read
 * the next, or answer TOO_BIG once the whole option is gone (the client
 * may go on with other options; the handshake deadline bounds it all). */
static int
opt_skip (struct nbd_conn *c)
{
  c->skip_opt -= (uint32_t) c->rneed;
  if (c->skip_opt)
    {
      conn_expect (c, c->hdr + 16,
                   c->skip_opt < NBD_MAX_OPTION ? c->skip_opt : NBD_MAX_OPTION);
      return 0;
    }
  opt_reply (c, be32_get (c->hdr + 8), NBD_REP_ERR_TOO_BIG, NULL, 0);
  conn_expect (c, c->hdr, 16);
  return 0;
}

/* --- input --- */

/* A complete piece of input (c->rneed bytes at c->rtarget) is here. */
static int
conn_input (struct nbd_conn *c)
{
  switch (c->state)
    {
    case HS_FLAGS:
      {
        uint32_t f = be32_get (c->hdr);
        if (!(f & NBD_FLAG_C_FIXED_NEWSTYLE) || (f & ~3u))
          return -EPROTO;
        c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
        c->state = OPTIONS;
        conn_expect (c, c->hdr, 16);
        return 0;
      }
    case OPTIONS:
      if (c->skip_opt)
        return opt_skip (c);
      if (c->rneed == 16)
        {
          if (be64_get (c->hdr) != NBD_IHAVEOPT)
            return -EPROTO;
          uint32_t len = be32_get (c->hdr + 12);
          if (len > NBD_MAX_OPTION)
            {
              c->skip_opt = len;
              conn_expect (c, c->hdr + 16, NBD_MAX_OPTION);
              return 0;
            }
          if (len > 0)
            {
              conn_expect (c, c->hdr, 16 + len);
              c->rpos = 16;
              return 0;
            }
        }
      {
        int r = opt_handle (c);
        if (r == 0 && c->state == OPTIONS && !c->dead)
          conn_expect (c, c->hdr, 16);
        return r;
      }
    case TRANSMIT:
      if (c->pending_write)
        {
          struct nbd_req *r = c->pending_write;
          c->pending_write = NULL;
          req_submit (c, r);
          conn_expect (c, c->hdr, 28);
          return 0;
        }
      return req_header (c);
    case CLOSING:
      return 0;
    }
  return 0;
}

static void
conn_read_cb (void *data)
{
  struct nbd_conn *c = data;
  c->read_sched = false;
  if (!c->dead)
    conn_dispatch (c->fd, POLLIN, c);
  conn_unref (c);
}

/* Input already read waits for no poll: go on with it from the loop once
 * the connection may take more requests. */
static void
conn_kick (struct nbd_conn *c)
{
  if (c->read_sched || c->dead || c->state == CLOSING || c->in_pos >= c->in_len
      || conn_throttled (c))
    return;
  c->refs++;
  if (cowd_defer (conn_read_cb, c) == 0)
    c->read_sched = true;
  else
    c->refs--;
}

static void
conn_read (struct nbd_conn *c)
{
  for (int reads = 0; reads < 64 && !c->dead && c->state != CLOSING;)
    {
      if (conn_throttled (c))
        break;
      size_t want = c->rneed - c->rpos;
      if (c->in_pos < c->in_len)
        {
          size_t n
              = c->in_len - c->in_pos < want ? c->in_len - c->in_pos : want;
          memcpy (c->rtarget + c->rpos, c->in + c->in_pos, n);
          c->in_pos += n;
          c->rpos += n;
        }
      else
        {
          bool direct = want >= sizeof c->in;
          ssize_t r = direct ? read (c->fd, c->rtarget + c->rpos, want)
                             : read (c->fd, c->in, sizeof c->in);
          reads++;
          if (r == 0)
            {
              conn_close (
                  c, c->state == TRANSMIT
                             && (c->inflight || c->rpos || c->pending_write)
                         ? "client disconnected mid-request"
                         : NULL);
              return;
            }
          if (r < 0)
            {
              if (errno == EAGAIN || errno == EINTR)
                break;
              conn_close (c, "reading from the client failed");
              return;
            }
          if (direct)
            c->rpos += (size_t) r;
          else
            c->in_pos = 0, c->in_len = (size_t) r;
        }
      if (c->rpos < c->rneed)
        continue;
      int e = conn_input (c);
      if (e < 0)
        {
          char why[128];
          snprintf (why, sizeof why, "dropping the client: %s",
                    e == -EPROTO   ? "protocol violation (bad magic or flags)"
                    : e == -EFBIG  ? "request or option too large"
                    : e == -ENOENT ? "unknown export name"
                                   : strerror (-e));
          conn_close (c, why);
          return;
        }
    }
  conn_kick (c); /* the caller sets the poll events */
}

static int
conn_dispatch (int fd, int revents, void *data)
{
  struct nbd_conn *c = data;
  c->refs++; /* keep c alive across this dispatch */
  cowd_batch_begin ();
  if (revents & POLLOUT)
    conn_send (c);
  if (!c->dead && (revents & (POLLIN | POLLHUP | POLLERR)))
    conn_read (c);
  cowd_batch_end ();
  if (!c->dead)
    conn_set_events (c);
  conn_unref (c);
  return 0;
}

static void
conn_new (struct nbd_export *e, int fd)
{
  struct nbd_conn *c = calloc (1, sizeof *c);
  if (!c)
    {
      close (fd);
      return;
    }
  c->exp = e;
  c->fd = fd;
  c->refs = 1;
  c->state = HS_FLAGS;
  c->events = POLLIN;
  conn_expect (c, c->hdr, 4);
  c->next = e->conns;
  e->conns = c;
  e->nconns++;
  cowd_io_poll_add (fd, POLLIN, c, conn_dispatch);
  cowd_timer_arm (&c->hs_timer, (uint64_t) nbd_handshake_timeout_ms * 1000000,
                  conn_handshake_expired, c);
  struct obuf *o = obuf_new (18, NULL, 0);
  be64_put (o->hdr, NBD_MAGIC);
  be64_put (o->hdr + 8, NBD_IHAVEOPT);
  be16_put (o->hdr + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  conn_queue (c, o);
}

static int export_accept (int fd, int revents, void *data);

static void
export_accept_resume (void *data)
{
  struct nbd_export *e = data;
  cowd_io_poll_add (e->lfd, POLLIN, e, export_accept);
}

/* Out of descriptors or memory: a readable listener would make the loop
 * spin on accept, so it rests (clients wait in the backlog) and is
 * polled again after NBD_ACCEPT_BACKOFF_MS; the failure is logged once
 * per window with a count (lograte). */
static void
export_accept_pause (struct nbd_export *e, int err)
{
  lograte_log (&e->accept_lr, LOG_ERR, err,
               "nbd: %s: cannot accept a "
               "client on %s: %s; not accepting for %u ms",
               vol_name (e->vol), e->path, strerror (err),
               NBD_ACCEPT_BACKOFF_MS);
  if (e->accept_timer.armed)
    return;
  cowd_io_poll_del (e->lfd);
  if (cowd_timer_arm (&e->accept_timer, NBD_ACCEPT_BACKOFF_MS * 1000000ull,
                      export_accept_resume, e)
      < 0)
    export_accept_resume (e);
}

static int
export_accept (int fd, int revents, void *data)
{
  struct nbd_export *e = data;
  for (;;)
    {
      int cfd = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0)
        {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
              || errno == ENOMEM)
            export_accept_pause (e, errno);
          else if (errno != EAGAIN && errno != EINTR)
            qb_log (LOG_ERR, "nbd: %s: accept on %s failed: %m",
                    vol_name (e->vol), e->path);
          break;
        }
      conn_new (e, cfd);
    }
  return 0;
}

struct nbd_export *
nbd_export_new (struct volume *v, const char *path, char *err, size_t errlen)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen (path) >= sizeof sa.sun_path)
    {
      snprintf (err, errlen, "volume %s: socket path %s is too long",
                vol_name (v), path);
      return NULL;
    }
  strcpy (sa.sun_path, path);
  struct nbd_export *e = calloc (1, sizeof *e);
  if (!e)
    return NULL;
  e->vol = v;
  e->path = strdup (path);
  e->lfd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  unlink (path);
  mode_t old = umask (0177);
  int r = e->lfd < 0 ? -1 : bind (e->lfd, (struct sockaddr *) &sa, sizeof sa);
  umask (old);
  if (r < 0 || chmod (path, 0600) < 0 || listen (e->lfd, 64) < 0)
    {
      snprintf (err, errlen, "volume %s: cannot listen on %s: %s", vol_name (v),
                path, strerror (errno));
      if (e->lfd >= 0)
        close (e->lfd);
      free (e->path);
      free (e);
      return NULL;
    }
  cowd_io_poll_add (e->lfd, POLLIN, e, export_accept);
  return e;
}

void
nbd_export_free (struct nbd_export *e)
{
  if (!e)
    return;
  if (e->accept_timer.armed)
    cowd_timer_stop (&e->accept_timer);
  else
    cowd_io_poll_del (e->lfd);
  lograte_flush (&e->accept_lr);
  close (e->lfd);
  unlink (e->path);
  /* Connections with requests in the engine outlive the export. */
  for (struct nbd_conn *c = e->conns, *next; c; c = next)
    {
      next = c->next;
      c->exp = NULL;
      c->next = NULL;
      conn_close (c, NULL);
    }
  free (e->path);
  free (e);
}

unsigned
nbd_export_connections (const struct nbd_export *e)
{
  return e ? e->nconns : 0;
}

const char *
nbd_export_socket (const struct nbd_export *e)
{
  return e->path;
}
