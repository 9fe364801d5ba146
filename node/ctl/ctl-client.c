/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-client.c: cowctl's end of the control channel, and the service
 * name both ends derive from the run directory.  See ctl.h.  A request
 * is one message; the answer is read frame by frame (ctl-frame.c) until
 * it is whole, within the caller's timeout in all. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <qb/qbipcc.h>

#include "byteorder.h"
#include "clock.h"
#include "ctl.h"
#include "dscow.h"

void
ctl_service_name (const char *run_dir, char *buf, size_t len)
{
  size_t n = strlen (run_dir);
  while (n > 1 && run_dir[n - 1] == '/')
    n--;
  snprintf (buf, len, "cowd-%08x", dscow_crc32c (0, run_dir, n));
}

/* The size of argv's request message. */
static size_t
ctl_request_size (int argc, char **argv)
{
  size_t slen = 0;
  for (int i = 0; i < argc; i++)
    slen += strlen (argv[i]) + 1;
  return sizeof (struct qb_ipc_request_header) + 12 + slen;
}

/* The request message for argv; NULL when it does not fit. */
static uint8_t *
ctl_request (unsigned flags, int argc, char **argv, size_t *size)
{
  struct qb_ipc_request_header h = { .id = CTL_MSG_COMMAND };
  *size = ctl_request_size (argc, argv);
  if (*size > CTL_MAX_MSG || (unsigned) argc > CTL_ARGC_MAX)
    return NULL;
  uint8_t *msg = malloc (*size);
  if (!msg)
    return NULL;
  h.size = (int32_t) *size;
  memcpy (msg, &h, sizeof h);
  le32_put (msg + sizeof h, CTL_VERSION);
  le32_put (msg + sizeof h + 4, flags);
  le32_put (msg + sizeof h + 8, (uint32_t) argc);
  uint8_t *p = msg + sizeof h + 12;
  for (int i = 0; i < argc; i++)
    {
      size_t n = strlen (argv[i]) + 1;
      memcpy (p, argv[i], n);
      p += n;
    }
  return msg;
}

/* A wait for the next frame is cut in slices this long: over shared
 * memory, qb_ipcc_recv sleeps on a semaphore that a dead cowd never
 * posts, and libqb looks at the connection only when a wait ends. */
#define CTL_RECV_SLICE_MS 200

/* Read frames until the answer is whole, within timeout_ms in all;
 * -ECONNRESET when cowd goes away before it has answered. */
static int
ctl_receive (qb_ipcc_connection_t *c, struct ctl_answer *ans, int timeout_ms)
{
  struct ctl_unframe u = { .ans = ans };
  uint8_t *resp = malloc (CTL_MAX_MSG);
  uint64_t end = clock_now_ns () + (uint64_t) timeout_ms * 1000000;
  int r = resp ? 0 : -ENOMEM;
  while (r == 0)
    {
      uint64_t now = clock_now_ns ();
      int left = now >= end ? 0 : (int) ((end - now + 999999) / 1000000);
      ssize_t n = left ? qb_ipcc_recv (
                      c, resp, CTL_MAX_MSG,
                      left < CTL_RECV_SLICE_MS ? left : CTL_RECV_SLICE_MS)
                       : -ETIMEDOUT;
      if (n == -ETIMEDOUT && left > CTL_RECV_SLICE_MS)
        n = qb_ipcc_is_connected (c) ? 0 : -ECONNRESET;
      else if (n == -ENOTCONN)
        n = -ECONNRESET;
      if (n == 0)
        continue;
      r = n < 0 ? (int) n : ctl_unframe_feed (&u, resp, (size_t) n);
    }
  free (resp);
  if (r == -EPROTO)
    snprintf (ans->why, sizeof ans->why, "%s", u.why);
  return r < 0 ? r : 0;
}

/* A single older answer to our version 3 request: cowd is older. */
static bool
ctl_older_cowd (const struct ctl_answer *a)
{
  static const char older[] = "unsupported control protocol version";
  return a->version < 3 && a->status == CTL_EXIT_USAGE && a->text
         && strncmp (a->text, older, sizeof older - 1) == 0;
}

struct ctl_conn
{
  qb_ipcc_connection_t *c;
  size_t max_request;
};

struct ctl_conn *
ctl_connect (const char *run_dir, size_t max_request, int *err)
{
  char name[64];
  ctl_service_name (run_dir, name, sizeof name);
  struct ctl_conn *conn = malloc (sizeof *conn);
  if (!conn)
    {
      *err = -ENOMEM;
      return NULL;
    }
  if (max_request > CTL_MAX_MSG)
    max_request = CTL_MAX_MSG;
  conn->max_request = max_request < CTL_CONN_MIN ? CTL_CONN_MIN : max_request;
  errno = 0;
  if (!(conn->c = qb_ipcc_connect (name, conn->max_request)))
    {
      *err = errno ? -errno : -ECONNREFUSED;
      free (conn);
      return NULL;
    }
  return conn;
}

void
ctl_disconnect (struct ctl_conn *conn)
{
  if (!conn)
    return;
  qb_ipcc_disconnect (conn->c);
  free (conn);
}

int
ctl_call_on (struct ctl_conn *conn, unsigned flags, int argc, char **argv,
             struct ctl_answer *ans, int timeout_ms)
{
  size_t size;
  uint8_t *msg = ctl_request (flags, argc, argv, &size);
  if (!msg || size > conn->max_request)
    {
      free (msg);
      return -E2BIG;
    }
  struct iovec iov = { msg, size };
  ssize_t r = qb_ipcc_sendv (conn->c, &iov, 1);
  free (msg);
  int ret = r < 0 ? (int) r : ctl_receive (conn->c, ans, timeout_ms);
  if (ret == 0 && ctl_older_cowd (ans))
    {
      snprintf (ans->why, sizeof ans->why,
                "cowd is older than this cowctl"
                " and does not speak control protocol version %u; use the "
                "cowctl of cowd's release",
                CTL_VERSION);
      return -EPROTONOSUPPORT;
    }
  return ret;
}

/* One connection whose rings hold this request (most are a few hundred
 * bytes: CTL_CONN_MIN). */
int
ctl_call (const char *run_dir, unsigned flags, int argc, char **argv,
          struct ctl_answer *ans, int timeout_ms)
{
  int r;
  struct ctl_conn *conn
      = ctl_connect (run_dir, ctl_request_size (argc, argv), &r);
  if (!conn)
    return r;
  r = ctl_call_on (conn, flags, argc, argv, ans, timeout_ms);
  ctl_disconnect (conn);
  return r;
}
