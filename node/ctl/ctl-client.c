/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-client.c: cowctl's end of the control channel, and the service
 * name both ends derive from the run directory.  See ctl.h. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <qb/qbipcc.h>

#include "byteorder.h"
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

/* Decode an answer of r bytes into ans: 0, or -EPROTO. */
static int
ctl_decode (const uint8_t *resp, ssize_t r, struct ctl_answer *ans)
{
  struct qb_ipc_response_header rh;
  if ((size_t) r < sizeof rh + 9)
    return -EPROTO;
  memcpy (&rh, resp, sizeof rh);
  uint32_t version = le32_get (resp + sizeof rh);
  if (rh.size != r || resp[r - 1] != '\0' || version < CTL_VERSION_MIN
      || version > CTL_VERSION)
    return -EPROTO;
  size_t pos = sizeof rh + 8, clen = 0;
  if (version >= 2)
    {
      if ((size_t) r < pos + 4 + 1)
        return -EPROTO;
      clen = le32_get (resp + pos);
      pos += 4;
      if (clen > CTL_CODE_MAX || (size_t) r - pos < clen + 1)
        return -EPROTO;
    }
  ans->status = (int) le32_get (resp + sizeof rh + 4);
  memcpy (ans->code, resp + pos, clen);
  ans->code[clen] = '\0';
  if (ans->status != 0 && clen == 0)   /* a version 1 cowd */
    snprintf (ans->code, sizeof ans->code, "%s", cow_err_name
              (ans->status == CTL_EXIT_USAGE ? COW_E_USAGE : COW_E_INTERNAL));
  ans->text = strdup ((const char *) resp + pos + clen);
  return ans->text ? 0 : -ENOMEM;
}

int
ctl_call (const char *run_dir, unsigned flags, int argc, char **argv,
          struct ctl_answer *ans, int timeout_ms)
{
  char name[64];
  ctl_service_name (run_dir, name, sizeof name);
  qb_ipcc_connection_t *c = qb_ipcc_connect (name, CTL_MAX_MSG);
  if (!c)
    return errno ? -errno : -ECONNREFUSED;
  size_t slen = 0;
  for (int i = 0; i < argc; i++)
    slen += strlen (argv[i]) + 1;
  struct qb_ipc_request_header h = { .id = CTL_MSG_COMMAND };
  size_t size = sizeof h + 12 + slen;
  uint8_t *msg = malloc (size), *resp = malloc (CTL_MAX_MSG);
  int ret = -ENOMEM;
  if (!msg || !resp || size > CTL_MAX_MSG)
    goto out;
  h.size = (int32_t) size;
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
  struct iovec iov = { msg, size };
  ssize_t r = qb_ipcc_sendv_recv (c, &iov, 1, resp, CTL_MAX_MSG, timeout_ms);
  ret = r < 0 ? (int) r : ctl_decode (resp, r, ans);
out:
  free (msg);
  free (resp);
  qb_ipcc_disconnect (c);
  return ret;
}
