/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-frame.c: the framing of version 3 answers (see ctl.h), both ways,
 * as pure functions over buffers so the unit test drives them without a
 * socket.
 *
 * An answer of any size is cut into frames that each fit in one libqb
 * response (CTL_FRAME_MAX bytes with their headers): a HEAD frame with
 * the status, the error code and the text's length; DATA frames with the
 * text in order; an END frame repeating the length with the crc32c of
 * the whole text.  Frames are numbered from 0, so a lost, repeated or
 * reordered frame is seen at once.  The encoder (ctl_stream) makes one
 * frame per call, so the server writes an answer as the channel accepts
 * it; the decoder (ctl_unframe) checks every length before it reads and
 * fails with a sentence, never with garbage.  A single version 1 or 2
 * answer (an older cowd, or an answer before the version was known) is
 * decoded too.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qbipc_common.h>

#include "byteorder.h"
#include "ctl.h"
#include "dscow.h"

#define FRAME_HEAD (sizeof (struct qb_ipc_response_header) + 16)

/* --- encoder --- */

void
ctl_stream_init_take (struct ctl_stream *s, int status, const char *code,
                      struct strbuf *text)
{
  memset (s, 0, sizeof *s);
  s->status = status;
  snprintf (s->code, sizeof s->code, "%s", code ? code : "");
  sb_move (&s->text, text);
  s->len = s->text.len;
}

void
ctl_stream_free (struct ctl_stream *s)
{
  sb_free (&s->text);
}

/* Write a frame's headers around a payload already at buf + FRAME_HEAD. */
static size_t
ctl_frame_wrap (uint8_t *buf, uint32_t kind, uint32_t seq, size_t plen)
{
  struct qb_ipc_response_header h = { .id = CTL_MSG_COMMAND,
                                      .size = (int32_t) (FRAME_HEAD + plen),
                                      .error = 0 };
  memcpy (buf, &h, sizeof h);
  le32_put (buf + sizeof h, CTL_VERSION);
  le32_put (buf + sizeof h + 4, kind);
  le32_put (buf + sizeof h + 8, seq);
  le32_put (buf + sizeof h + 12, (uint32_t) plen);
  return FRAME_HEAD + plen;
}

size_t
ctl_stream_next (struct ctl_stream *s, uint8_t *buf)
{
  uint8_t *p = buf + FRAME_HEAD;
  size_t clen = strlen (s->code), n;
  switch (s->stage)
    {
    case 0: /* HEAD */
      le32_put (p, (uint32_t) s->status);
      le32_put (p + 4, (uint32_t) clen);
      memcpy (p + 8, s->code, clen);
      le64_put (p + 8 + clen, s->len);
      s->stage = s->len ? 1 : 2;
      return ctl_frame_wrap (buf, CTL_FRAME_HEAD, s->seq++, 16 + clen);
    case 1: /* DATA */
      n = s->len - s->pos;
      if (n > CTL_FRAME_DATA)
        n = CTL_FRAME_DATA;
      memcpy (p, s->text.s + s->pos, n);
      s->crc = dscow_crc32c (s->crc, p, n);
      s->pos += n;
      if (s->pos == s->len)
        s->stage = 2;
      return ctl_frame_wrap (buf, CTL_FRAME_DATA_KIND, s->seq++, n);
    case 2: /* END */
      le64_put (p, s->len);
      le32_put (p + 8, s->crc);
      s->stage = 3;
      return ctl_frame_wrap (buf, CTL_FRAME_END, s->seq++, 12);
    default:
      return 0;
    }
}

/* --- decoder --- */

static int ctl_unframe_fail (struct ctl_unframe *u, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
ctl_unframe_fail (struct ctl_unframe *u, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (u->why, sizeof u->why, fmt, ap);
  va_end (ap);
  u->stage = -1;
  return -EPROTO;
}

static void
ctl_answer_head (struct ctl_answer *a, uint32_t version, uint32_t status,
                 const uint8_t *code, size_t clen)
{
  a->version = version;
  a->status = (int) status;
  memcpy (a->code, code, clen);
  a->code[clen] = '\0';
}

/* A whole version 1 or 2 answer in one message. */
static int
ctl_unframe_single (struct ctl_unframe *u, uint32_t version, const uint8_t *m,
                    size_t len)
{
  size_t pos = sizeof (struct qb_ipc_response_header) + 8, clen = 0;
  struct ctl_answer *a = u->ans;
  if (len < pos + 1 || m[len - 1] != '\0')
    return ctl_unframe_fail (u,
                             "a version %u answer of %zu bytes is "
                             "truncated",
                             version, len);
  if (version >= 2)
    {
      clen = len >= pos + 5 ? le32_get (m + pos) : CTL_CODE_MAX + 1;
      pos += 4;
      if (clen > CTL_CODE_MAX || len - pos < clen + 1)
        return ctl_unframe_fail (u, "a version 2 answer has a bad error "
                                    "code length");
    }
  ctl_answer_head (a, version,
                   le32_get (m + sizeof (struct qb_ipc_response_header) + 4),
                   m + pos, clen);
  if (a->status != 0 && clen == 0) /* a version 1 cowd */
    snprintf (a->code, sizeof a->code, "%s",
              cow_err_name (a->status == CTL_EXIT_USAGE ? COW_E_USAGE
                                                        : COW_E_INTERNAL));
  a->text = strdup ((const char *) m + pos + clen);
  if (!a->text)
    return -ENOMEM;
  a->len = strlen (a->text);
  u->stage = 2;
  return 1;
}

static int
ctl_unframe_head (struct ctl_unframe *u, const uint8_t *p, size_t plen)
{
  struct ctl_answer *a = u->ans;
  size_t clen = plen >= 8 ? le32_get (p + 4) : 0;
  if (plen < 16 || clen > CTL_CODE_MAX || plen != 16 + clen)
    return ctl_unframe_fail (u,
                             "the first frame of the answer has a bad "
                             "length (%zu bytes)",
                             plen);
  u->total = le64_get (p + 8 + clen);
  if (u->total > CTL_TEXT_MAX)
    return ctl_unframe_fail (u,
                             "the answer announces %llu bytes, more "
                             "than the %u a cowctl accepts",
                             (unsigned long long) u->total, CTL_TEXT_MAX);
  ctl_answer_head (a, CTL_VERSION, le32_get (p), p + 8, clen);
  if (!(a->text = malloc ((size_t) u->total + 1)))
    return -ENOMEM;
  a->text[0] = '\0';
  a->len = 0;
  u->stage = 1;
  return 0;
}

static int
ctl_unframe_data (struct ctl_unframe *u, const uint8_t *p, size_t plen)
{
  struct ctl_answer *a = u->ans;
  if (plen == 0 || plen > u->total - a->len)
    return ctl_unframe_fail (u,
                             "a frame carries %zu bytes past the %llu "
                             "the answer announced",
                             plen, (unsigned long long) u->total);
  memcpy (a->text + a->len, p, plen);
  a->len += plen;
  a->text[a->len] = '\0';
  u->crc = dscow_crc32c (u->crc, p, plen);
  return 0;
}

static int
ctl_unframe_end (struct ctl_unframe *u, const uint8_t *p, size_t plen)
{
  struct ctl_answer *a = u->ans;
  if (plen != 12 || le64_get (p) != u->total || a->len != u->total)
    return ctl_unframe_fail (u, "the answer ended after %zu of %llu bytes",
                             a->len, (unsigned long long) u->total);
  if (le32_get (p + 8) != u->crc)
    return ctl_unframe_fail (u,
                             "the answer's checksum does not match "
                             "its %zu bytes",
                             a->len);
  u->stage = 2;
  return 1;
}

int
ctl_unframe_feed (struct ctl_unframe *u, const uint8_t *m, size_t len)
{
  struct qb_ipc_response_header h;
  if (u->stage < 0 || u->stage > 1)
    return ctl_unframe_fail (u, "a frame arrived after the answer ended");
  if (len < sizeof h + 8)
    return ctl_unframe_fail (u, "a frame of %zu bytes is truncated", len);
  memcpy (&h, m, sizeof h);
  uint32_t version = le32_get (m + sizeof h);
  if ((size_t) h.size != len)
    return ctl_unframe_fail (u, "a frame says %d bytes but %zu arrived", h.size,
                             len);
  if (version < CTL_VERSION_MIN || version > CTL_VERSION)
    return ctl_unframe_fail (u,
                             "cowd answered in control protocol version "
                             "%u; this cowctl speaks versions %u to %u",
                             version, CTL_VERSION_MIN, CTL_VERSION);
  if (version < 3)
    return u->stage == 0
               ? ctl_unframe_single (u, version, m, len)
               : ctl_unframe_fail (u,
                                   "a version %u message inside a version 3 "
                                   "answer",
                                   version);
  if (len < FRAME_HEAD)
    return ctl_unframe_fail (u, "a frame of %zu bytes is truncated", len);
  uint32_t kind = le32_get (m + sizeof h + 4),
           seq = le32_get (m + sizeof h + 8);
  size_t plen = le32_get (m + sizeof h + 12);
  if (plen != len - FRAME_HEAD)
    return ctl_unframe_fail (u,
                             "frame %u says %zu bytes of payload but "
                             "carries %zu",
                             seq, plen, len - FRAME_HEAD);
  if (seq != u->seq)
    return ctl_unframe_fail (u,
                             "frame %u arrived where frame %u was "
                             "expected",
                             seq, u->seq);
  u->seq++;
  const uint8_t *p = m + FRAME_HEAD;
  if (u->stage == 0 && kind == CTL_FRAME_HEAD)
    return ctl_unframe_head (u, p, plen);
  if (u->stage == 1 && kind == CTL_FRAME_DATA_KIND)
    return ctl_unframe_data (u, p, plen);
  if (u->stage == 1 && kind == CTL_FRAME_END)
    return ctl_unframe_end (u, p, plen);
  return ctl_unframe_fail (u, "frame %u is of kind %u, unexpected here", seq,
                           kind);
}
