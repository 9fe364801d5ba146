/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_cluster.c: the cluster message codec and the ownership table as a
 * state machine, without corosync: sequences of messages and membership
 * events, fed to two tables, must give the same result everywhere. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "byteorder.h"
#include "cluster-int.h"
#include "crc32c.h"
#include "strmap.h"

struct seen
{
  unsigned owner_calls, handoff_requests, errors, fencing, fenced;
  uint32_t fenced_node, fenced_by;
  bool fenced_storage;
  uint32_t last_owner, handoff_to;
  uint64_t last_gen;
  char last_error[256];
};

static void
on_owner (void *ud, const char *vol, uint32_t owner, uint64_t epoch,
          uint64_t gen)
{
  struct seen *s = ud;
  s->owner_calls++;
  s->last_owner = owner;
  s->last_gen = gen;
}

static void
on_handoff (void *ud, const char *vol, uint32_t to)
{
  struct seen *s = ud;
  s->handoff_requests++;
  s->handoff_to = to;
}

static void
on_error (void *ud, const char *vol, int code, const char *sentence)
{
  struct seen *s = ud;
  s->errors++;
  snprintf (s->last_error, sizeof s->last_error, "%s", sentence);
}

static void
on_fencing (void *ud, const char *vol, uint32_t node)
{
  ((struct seen *) ud)->fencing++;
}

static void
on_fenced (void *ud, uint32_t node, uint32_t by, bool storage)
{
  struct seen *s = ud;
  s->fenced++;
  s->fenced_node = node;
  s->fenced_by = by;
  s->fenced_storage = storage;
}

static const struct cluster_callbacks cbs = {
  .on_owner = on_owner,
  .on_handoff_request = on_handoff,
  .on_error = on_error,
  .on_fencing = on_fencing,
  .on_fenced = on_fenced,
};

static struct cl_msg
msg (uint16_t type, const char *vol, uint32_t node, uint64_t gen)
{
  struct cl_msg m
      = { .type = type, .node = node, .generation = gen, .time_ms = 1000 };
  snprintf (m.def.name, sizeof m.def.name, "%s", vol);
  return m;
}

static void
bounce_eq (const struct cluster_vol *v, uint32_t a, uint32_t b, uint32_t count,
           uint64_t since)
{
  ck_assert_uint_eq (v->bounce_a, a);
  ck_assert_uint_eq (v->bounce_b, b);
  ck_assert_uint_eq (v->bounce_count, count);
  ck_assert_uint_eq (v->bounce_since_ms, since);
}

/* Apply through the codec, as the wire would. */
static void
apply (struct cl_table *t, uint32_t sender, struct cl_msg m, struct seen *s,
       uint32_t local)
{
  size_t len;
  void *buf = cl_msg_encode (&m, &len);
  struct cl_msg d;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  struct cl_effects fx = { &cbs, s, local };
  cl_table_apply (t, sender, &d, &fx);
  cl_msg_free (&d);
  free (buf);
}

static void
define (struct cl_table *t, struct seen *s, bool exclusive)
{
  struct cl_msg m = msg (CL_MSG_DEFINE, "vm1", 0, 0);
  strcpy (m.def.base, "iscsi://10.0.0.1/iqn.x/1");
  strcpy (m.def.cow, "iscsi://10.0.0.1/iqn.x/2");
  strcpy (m.def.cow_ident, "naa.60000000000000000e00000000010002");
  m.def.chunk_size = 65536;
  m.def.commit = 1;
  m.def.exclusive = exclusive;
  apply (t, 1, m, s, 1);
}

START_TEST (test_codec)
{
  struct cl_msg m = msg (CL_MSG_HANDOFF, "vm1", 3, 77), d;
  size_t len;
  uint8_t *buf = cl_msg_encode (&m, &len);
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_HANDOFF);
  ck_assert_str_eq (d.def.name, "vm1");
  ck_assert_uint_eq (d.node, 3);
  ck_assert_uint_eq (d.generation, 77);
  struct cl_msg r = msg (CL_MSG_HANDOFF_REFUSED, "vm2", 4, 0);
  r.error = EIO;
  size_t rlen;
  uint8_t *rbuf = cl_msg_encode (&r, &rlen);
  ck_assert_uint_eq (rlen, CL_HDR_SIZE + CLUSTER_NAME_MAX + 8);
  ck_assert_int_eq (cl_msg_decode (rbuf, rlen, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_HANDOFF_REFUSED);
  ck_assert_str_eq (d.def.name, "vm2");
  ck_assert_uint_eq (d.node, 4);
  ck_assert_uint_eq (d.error, EIO);
  ck_assert_int_eq (cl_msg_decode (rbuf, rlen - 4, &d), -EINVAL);
  free (rbuf);
  ck_assert_int_eq (cl_msg_decode (buf, len - 1, &d), -EINVAL);
  ck_assert_int_eq (cl_msg_decode (buf, 8, &d), -EINVAL);
  buf[0] = 9;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EPROTONOSUPPORT);
  buf[0] = 1; /* version 1: refused since version 2 */
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EPROTONOSUPPORT);
  buf[0] = CL_MSG_VERSION;
  buf[2] = 200; /* a type from a newer agent */
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_NOP);
  buf[2] = CL_MSG_HANDOFF;
  memset (buf + CL_HDR_SIZE, 'x', CLUSTER_NAME_MAX); /* no NUL */
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EINVAL);
  free (buf);
}
END_TEST

/* Set the header's length to len and the checksum over what precedes it,
 * as an encoder would have: what is then refused is the body itself. */
static void
reseal (uint8_t *buf, size_t len)
{
  buf[4] = (uint8_t) len;
  buf[5] = (uint8_t) (len >> 8);
  buf[6] = (uint8_t) (len >> 16);
  buf[7] = (uint8_t) (len >> 24);
  uint32_t c = crc32c (0, buf, len - 4);
  for (int i = 0; i < 4; i++)
    buf[len - 4 + i] = (uint8_t) (c >> (8 * i));
}

START_TEST (test_piece_codec)
{
  struct cluster_vol vols[3] = { 0 };
  strcpy (vols[0].def.name, "a");
  strcpy (vols[0].def.base, "/srv/base.img");
  strcpy (vols[0].def.cow, "iscsi://10.0.0.1/iqn.x/2");
  strcpy (vols[0].def.cow_ident, "naa.60000000000000000e00000000010002");
  vols[0].def.chunk_size = 65536;
  vols[0].def.commit = 2;
  vols[0].def.exclusive = true;
  vols[0].state = CL_OWNED;
  vols[0].owner = 2;
  vols[0].epoch = 9;
  vols[0].generation = 1ull << 40;
  strcpy (vols[1].def.name, "b");
  vols[1].state = CL_FENCING;
  vols[1].fenced_node = 3;
  vols[1].bouncing = true;
  vols[1].bounce_a = 1;
  vols[1].bounce_b = 3;
  vols[1].bounce_count = 7;
  vols[1].bounce_since_ms = 1ull << 41;
  memset (vols[2].def.name, 'n', CLUSTER_NAME_MAX - 1); /* longest */
  memset (vols[2].def.cow, 'c', CLUSTER_URI_MAX - 1);
  memset (vols[2].def.cow_ident, 'i', CLUSTER_IDENT_MAX - 1);
  vols[2].state = CL_HANDING_OFF;
  vols[2].requester = 4;
  struct cl_msg m = { .type = CL_MSG_SYNC_PIECE,
                      .vols = vols,
                      .nvols = 3,
                      .piece = 7,
                      .total = 1000,
                      .last = true };
  size_t len;
  uint8_t *buf = cl_msg_encode (&m, &len);
  struct cl_msg d;
  ck_assert_uint_eq (len, CL_PIECE_OVERHEAD + cl_msg_piece_vol_size (&vols[0])
                              + cl_msg_piece_vol_size (&vols[1])
                              + cl_msg_piece_vol_size (&vols[2]));
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_SYNC_PIECE);
  ck_assert_uint_eq (d.piece, 7);
  ck_assert_uint_eq (d.total, 1000);
  /* Without decoding (cpg.c reserves the table for piece 0 first). */
  uint32_t pp = 0, pt = 0;
  ck_assert_int_eq (cl_msg_peek_piece (buf, len, &pp, &pt), 0);
  ck_assert_uint_eq (pp, 7);
  ck_assert_uint_eq (pt, 1000);
  ck_assert_int_eq (cl_msg_peek_piece (buf, len - 1, &pp, &pt), -1);
  ck_assert (d.last);
  ck_assert_uint_eq (d.nvols, 3);
  ck_assert_mem_eq (&d.vols[0].def, &vols[0].def, sizeof vols[0].def);
  ck_assert_uint_eq (d.vols[0].owner, 2);
  ck_assert_uint_eq (d.vols[0].epoch, 9);
  ck_assert_uint_eq (d.vols[0].generation, 1ull << 40);
  ck_assert_int_eq (d.vols[1].state, CL_FENCING);
  ck_assert_uint_eq (d.vols[1].fenced_node, 3);
  ck_assert (d.vols[1].bouncing && !d.vols[0].bouncing);
  struct cluster_vol uncounted = vols[1];
  uncounted.bounce_count = 0;
  ck_assert_uint_eq (cl_msg_piece_vol_size (&vols[1]),
                     cl_msg_piece_vol_size (&uncounted) + 20);
  bounce_eq (&d.vols[1], 1, 3, 7, 1ull << 41);
  bounce_eq (&d.vols[0], 0, 0, 0, 0);
  ck_assert_str_eq (d.vols[2].def.name, vols[2].def.name);
  ck_assert_str_eq (d.vols[2].def.cow, vols[2].def.cow);
  ck_assert_str_eq (d.vols[2].def.cow_ident, vols[2].def.cow_ident);
  ck_assert_uint_eq (d.vols[2].requester, 4);
  cl_msg_free (&d);

  /* Truncated: by the header's length, and resealed (the body ends in
   * the middle of a volume). */
  ck_assert_int_eq (cl_msg_decode (buf, len - 10, &d), -EINVAL);
  uint8_t *cut = malloc (len);
  memcpy (cut, buf, len);
  reseal (cut, len - 10);
  ck_assert_int_eq (cl_msg_decode (cut, len - 10, &d), -EINVAL);
  /* A count larger than the volumes there. */
  memcpy (cut, buf, len);
  cut[CL_HDR_SIZE + 12] = 4;
  reseal (cut, len);
  ck_assert_int_eq (cl_msg_decode (cut, len, &d), -EINVAL);
  /* A string length past its field. */
  memcpy (cut, buf, len);
  cut[CL_HDR_SIZE + 16] = CLUSTER_NAME_MAX;
  reseal (cut, len);
  ck_assert_int_eq (cl_msg_decode (cut, len, &d), -EINVAL);
  free (cut);

  /* One bit flipped anywhere: the checksum refuses it. */
  buf[CL_HDR_SIZE + 20] ^= 1;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EBADMSG);
  buf[CL_HDR_SIZE + 20] ^= 1;
  buf[len - 1] ^= 0x80;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EBADMSG);
  buf[len - 1] ^= 0x80;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  cl_msg_free (&d);

  /* Another version. */
  buf[0] = 1;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EPROTONOSUPPORT);
  free (buf);

  /* The retired SYNC_DATA of version 1 is a no-op. */
  uint8_t old[CL_HDR_SIZE + 4]
      = { CL_MSG_VERSION, 0, CL_MSG_SYNC_DATA, 0, CL_HDR_SIZE + 4 };
  ck_assert_int_eq (cl_msg_decode (old, sizeof old, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_NOP);
}
END_TEST

/* SYNC_STATES: names and states, the table's digest in every piece; a
 * volume nobody used takes a few bytes.  SYNC_HAVE: a digest. */
START_TEST (test_states_codec)
{
  struct cluster_vol vols[3] = { 0 };
  strcpy (vols[0].def.name, "a");
  strcpy (vols[0].def.cow, "/not/sent");
  vols[0].state = CL_OWNED;
  vols[0].owner = 2;
  vols[0].epoch = 9;
  vols[0].generation = 1ull << 40;
  strcpy (vols[1].def.name, "unused");
  memset (vols[2].def.name, 'n', CLUSTER_NAME_MAX - 1);
  vols[2].state = CL_FENCING;
  vols[2].fenced_node = 3;
  vols[2].requester = 4;
  vols[2].bouncing = true;
  vols[2].bounce_a = 2;
  vols[2].bounce_b = 4;
  vols[2].bounce_count = 9;
  vols[2].bounce_since_ms = 123456789012ull;
  struct cl_msg m = { .type = CL_MSG_SYNC_STATES,
                      .vols = vols,
                      .nvols = 3,
                      .piece = 2,
                      .total = 100000,
                      .digest = { 100000, { 0x0123456789abcdefull, 42 } } };
  size_t len;
  uint8_t *buf = cl_msg_encode (&m, &len);
  ck_assert_uint_eq (cl_msg_states_vol_size (&vols[1]), 4 + 6);
  ck_assert_uint_eq (len, CL_STATES_OVERHEAD + cl_msg_states_vol_size (&vols[0])
                              + cl_msg_states_vol_size (&vols[1])
                              + cl_msg_states_vol_size (&vols[2]));
  struct cl_msg d;
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_SYNC_STATES);
  ck_assert_uint_eq (d.piece, 2);
  ck_assert (!d.last);
  uint32_t pp = 0, pt = 0;
  ck_assert_int_eq (cl_msg_peek_piece (buf, len, &pp, &pt), 0);
  ck_assert_uint_eq (pp, 2);
  ck_assert_uint_eq (pt, 100000);
  /* Another type is not a piece. */
  struct cl_msg mark = { .type = CL_MSG_SYNC_MARK };
  size_t mlen;
  void *mbuf = cl_msg_encode (&mark, &mlen);
  ck_assert_int_eq (cl_msg_peek_piece (mbuf, mlen, &pp, &pt), -1);
  free (mbuf);
  ck_assert (cluster_digest_equal (&d.digest, &m.digest));
  ck_assert_uint_eq (d.nvols, 3);
  ck_assert_str_eq (d.vols[0].def.name, "a");
  ck_assert_str_eq (d.vols[0].def.cow, ""); /* the joiner's own */
  ck_assert_int_eq (d.vols[0].state, CL_OWNED);
  ck_assert_uint_eq (d.vols[0].owner, 2);
  ck_assert_uint_eq (d.vols[0].epoch, 9);
  ck_assert_uint_eq (d.vols[0].generation, 1ull << 40);
  ck_assert_int_eq (d.vols[1].state, CL_UNOWNED);
  ck_assert_uint_eq (d.vols[1].epoch, 0);
  ck_assert_str_eq (d.vols[2].def.name, vols[2].def.name);
  ck_assert_int_eq (d.vols[2].state, CL_FENCING);
  ck_assert_uint_eq (d.vols[2].fenced_node, 3);
  ck_assert_uint_eq (d.vols[2].requester, 4);
  ck_assert (d.vols[2].bouncing && !d.vols[0].bouncing);
  bounce_eq (&d.vols[2], 2, 4, 9, 123456789012ull);
  bounce_eq (&d.vols[0], 0, 0, 0, 0);
  cl_msg_free (&d);
  /* The count alone, without the numbers: a volume asked for while
   * nobody owned it is not one, but the encoding allows it. */
  vols[1].bounce_a = 5;
  vols[1].bounce_b = 6;
  vols[1].bounce_count = 1;
  vols[1].bounce_since_ms = 77;
  ck_assert_uint_eq (cl_msg_states_vol_size (&vols[1]), 4 + 6 + 20);
  size_t len1;
  uint8_t *buf1 = cl_msg_encode (&m, &len1);
  ck_assert_uint_eq (len1, len + 20);
  ck_assert_int_eq (cl_msg_decode (buf1, len1, &d), 0);
  ck_assert_uint_eq (d.vols[1].epoch, 0);
  bounce_eq (&d.vols[1], 5, 6, 1, 77);
  cl_msg_free (&d);
  /* A count of 0 that says it follows is malformed. */
  size_t at = CL_HDR_SIZE + 32 + (2 + 1 + 2 + 28) + (2 + 6 + 2) + 8;
  ck_assert_uint_eq (le32_get (buf1 + at), 1);
  le32_put (buf1 + at, 0);
  reseal (buf1, len1);
  ck_assert_int_eq (cl_msg_decode (buf1, len1, &d), -EINVAL);
  /* Cut in the middle of the last volume's count, resealed. */
  le32_put (buf1 + at, 1);
  reseal (buf1, len1 - 14);
  ck_assert_int_eq (cl_msg_decode (buf1, len1 - 14, &d), -EINVAL);
  free (buf1);

  uint8_t *cut = malloc (len);
  /* Cut in the middle of a volume's numbers, resealed. */
  memcpy (cut, buf, len);
  reseal (cut, len - 10);
  ck_assert_int_eq (cl_msg_decode (cut, len - 10, &d), -EINVAL);
  /* A state past fencing; flags unknown. */
  size_t first = CL_HDR_SIZE + 32 + 2 + 1; /* after the name "a" */
  memcpy (cut, buf, len);
  cut[first + 1] = CL_FENCING + 1;
  reseal (cut, len);
  ck_assert_int_eq (cl_msg_decode (cut, len, &d), -EINVAL);
  memcpy (cut, buf, len);
  cut[first] = 8;
  reseal (cut, len);
  ck_assert_int_eq (cl_msg_decode (cut, len, &d), -EINVAL);
  /* An empty name. */
  memcpy (cut, buf, len);
  cut[CL_HDR_SIZE + 32] = 0;
  reseal (cut, len);
  ck_assert_int_eq (cl_msg_decode (cut, len, &d), -EINVAL);
  free (cut);
  buf[CL_HDR_SIZE + 20] ^= 1; /* the digest */
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EBADMSG);
  free (buf);

  struct cl_msg h
      = { .type = CL_MSG_SYNC_HAVE, .digest = { 7, { 1ull << 63, 5 } } };
  buf = cl_msg_encode (&h, &len);
  ck_assert_uint_eq (len, CL_HDR_SIZE + 24);
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
  ck_assert_int_eq (d.type, CL_MSG_SYNC_HAVE);
  ck_assert (cluster_digest_equal (&d.digest, &h.digest));
  buf[CL_HDR_SIZE + 4] = 1; /* flags must be 0 */
  ck_assert_int_eq (cl_msg_decode (buf, len, &d), -EINVAL);
  ck_assert_int_eq (cl_msg_decode (buf, len - 1, &d), -EINVAL);
  free (buf);
}
END_TEST

/* The table's digest is that of its definitions whatever the order they
 * came in, follows a redefinition and a delete, and differs for any
 * change of a field. */
START_TEST (test_table_digest)
{
  struct cl_table t = { 0 }, u = { 0 };
  struct seen s = { 0 };
  struct cluster_vol v[3] = { 0 };
  for (int i = 0; i < 3; i++)
    {
      snprintf (v[i].def.name, CLUSTER_NAME_MAX, "d%d", i);
      snprintf (v[i].def.cow, CLUSTER_URI_MAX, "/cow/%d", i);
      v[i].def.chunk_size = 65536;
    }
  for (int i = 0; i < 3; i++)
    ck_assert_ptr_nonnull (cl_table_add (&t, &v[i]));
  for (int i = 3; i-- > 0;)
    ck_assert_ptr_nonnull (cl_table_add (&u, &v[i]));
  ck_assert (cluster_digest_equal (&t.digest, &u.digest));
  ck_assert_uint_eq (t.digest.count, 3);
  struct cluster_digest d = { 0 };
  for (int i = 0; i < 3; i++)
    cluster_digest_add (&d, &v[i].def);
  ck_assert (cluster_digest_equal (&t.digest, &d));

  /* Each field counts. */
  struct cluster_digest before = d;
  struct cluster_voldef e = v[0].def;
  e.exclusive = true;
  cluster_digest_sub (&d, &v[0].def);
  cluster_digest_add (&d, &e);
  ck_assert (!cluster_digest_equal (&d, &before));
  cluster_digest_sub (&d, &e);
  e = v[0].def;
  strcpy (e.cow_ident, "naa.1");
  cluster_digest_add (&d, &e);
  ck_assert (!cluster_digest_equal (&d, &before));
  cluster_digest_sub (&d, &e);
  cluster_digest_add (&d, &v[0].def);
  ck_assert (cluster_digest_equal (&d, &before));

  /* A redefinition through DEFINE, then a delete. */
  struct cl_msg m = { .type = CL_MSG_DEFINE, .def = v[1].def };
  m.def.chunk_size = 4096;
  apply (&t, 1, m, &s, 1);
  ck_assert (!cluster_digest_equal (&t.digest, &u.digest));
  cluster_digest_sub (&d, &v[1].def);
  cluster_digest_add (&d, &m.def);
  ck_assert (cluster_digest_equal (&t.digest, &d));
  struct cl_msg un = { .type = CL_MSG_UNDEFINE };
  strcpy (un.def.name, "d0");
  apply (&t, 1, un, &s, 1);
  cluster_digest_sub (&d, &v[0].def);
  ck_assert (cluster_digest_equal (&t.digest, &d));
  ck_assert_uint_eq (t.digest.count, 2);
  cl_table_clear (&t);
  ck_assert_uint_eq (t.digest.count, 0);
  cl_table_clear (&u);
}
END_TEST

/* DEFINE_MANY applies each definition as a DEFINE would: a CoW device
 * named twice is refused for the second volume only. */
START_TEST (test_define_many)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  struct cluster_vol vols[3] = { 0 };
  const char *cows[3] = { "/cow/a", "/cow/b", "/cow/a" };
  for (int i = 0; i < 3; i++)
    {
      snprintf (vols[i].def.name, CLUSTER_NAME_MAX, "m%d", i);
      strcpy (vols[i].def.cow, cows[i]);
      vols[i].def.chunk_size = 4096u << i;
      vols[i].state = CL_OWNED; /* ignored: a definition only */
      vols[i].owner = 3;
    }
  struct cl_msg m = { .type = CL_MSG_DEFINE_MANY,
                      .vols = vols,
                      .nvols = 3,
                      .total = 3,
                      .last = true,
                      .time_ms = 1000 };
  apply (&t, 1, m, &s, 1);
  ck_assert_uint_eq (t.n, 2);
  ck_assert_uint_eq (cl_table_find (&t, "m1")->def.chunk_size, 8192);
  ck_assert_int_eq (cl_table_find (&t, "m0")->state, CL_UNOWNED);
  ck_assert_uint_eq (cl_table_find (&t, "m0")->owner, 0);
  ck_assert_ptr_null (cl_table_find (&t, "m2"));
  ck_assert_uint_eq (s.errors, 1);
  ck_assert_str_eq (s.last_error,
                    "volume m2: CoW device /cow/a is the CoW "
                    "device of volume m0 already; a CoW device belongs to "
                    "one volume");
  cl_table_clear (&t);
}
END_TEST

/* The biggest volume a piece can carry leaves room for many. */
START_TEST (test_piece_bound)
{
  struct cluster_vol v = { 0 };
  memset (v.def.name, 'n', CLUSTER_NAME_MAX - 1);
  memset (v.def.base, 'b', CLUSTER_URI_MAX - 1);
  memset (v.def.cow, 'c', CLUSTER_URI_MAX - 1);
  ck_assert_uint_le (CL_PIECE_OVERHEAD + 24 * cl_msg_piece_vol_size (&v),
                     CL_PIECE_MAX);
}
END_TEST

/* UNDEFINE (delete) of a volume a node owns is refused, on the node that
 * asked, and the volume stays; once released it goes; of a volume the
 * table lacks, it does nothing. */
START_TEST (test_undefine_owned)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  define (&t, &s, false);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  ck_assert_uint_eq (cl_table_find (&t, "vm1")->owner, 1);
  apply (&t, 2, msg (CL_MSG_UNDEFINE, "vm1", 0, 0), &s, 2);
  ck_assert_ptr_nonnull (cl_table_find (&t, "vm1"));
  ck_assert_uint_eq (s.errors, 1);
  ck_assert_str_eq (s.last_error, "volume vm1 is owned by node 1; detach it "
                                  "there before deleting it");
  apply (&t, 1, msg (CL_MSG_RELEASE, "vm1", 0, 0), &s, 2);
  apply (&t, 2, msg (CL_MSG_UNDEFINE, "vm1", 0, 0), &s, 2);
  ck_assert_ptr_null (cl_table_find (&t, "vm1"));
  /* Again, and of a volume never defined: nothing, and no error (a node
   * deletes before its own definition came back: own.c). */
  apply (&t, 2, msg (CL_MSG_UNDEFINE, "vm1", 0, 0), &s, 2);
  apply (&t, 2, msg (CL_MSG_UNDEFINE, "nosuch", 0, 0), &s, 2);
  ck_assert_uint_eq (t.n, 0);
  ck_assert_uint_eq (s.errors, 1);
  /* Other messages of an unknown volume are still refused. */
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "nosuch", 0, 0), &s, 2);
  ck_assert_uint_eq (s.errors, 2);
  ck_assert_str_eq (s.last_error,
                    "volume nosuch is not defined in the cluster");
  cl_table_clear (&t);
}
END_TEST

/* The indexes stay right through thousands of definitions and removals
 * (UNDEFINE moves the last volume into the hole). */
START_TEST (test_table_index)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  enum
  {
    N = 5000
  };
  for (int i = 0; i < N; i++)
    {
      struct cl_msg m = msg (CL_MSG_DEFINE, "", 0, 0);
      snprintf (m.def.name, sizeof m.def.name, "vm%05d", i);
      snprintf (m.def.cow, sizeof m.def.cow, "/cow/%05d", i);
      apply (&t, 1, m, &s, 1);
    }
  for (int i = 0; i < N; i += 3)
    {
      char name[16];
      snprintf (name, sizeof name, "vm%05d", i);
      apply (&t, 1, msg (CL_MSG_UNDEFINE, name, 0, 0), &s, 1);
    }
  ck_assert_uint_eq (t.n, N - (N + 2) / 3);
  for (int i = 0; i < N; i++)
    {
      char name[16], cow[16];
      snprintf (name, sizeof name, "vm%05d", i);
      snprintf (cow, sizeof cow, "/cow/%05d", i);
      struct cluster_vol *v = cl_table_find (&t, name);
      if (i % 3 == 0)
        ck_assert_ptr_null (v);
      else
        {
          ck_assert_ptr_nonnull (v);
          ck_assert_str_eq (v->def.cow, cow);
        }
    }
  /* The CoW index: a removed volume's device is free, a kept one not. */
  struct cl_msg m = msg (CL_MSG_DEFINE, "new1", 0, 0);
  strcpy (m.def.cow, "/cow/00000");
  apply (&t, 1, m, &s, 1);
  ck_assert_ptr_nonnull (cl_table_find (&t, "new1"));
  m = msg (CL_MSG_DEFINE, "new2", 0, 0);
  strcpy (m.def.cow, "/cow/00001");
  apply (&t, 1, m, &s, 1);
  ck_assert_ptr_null (cl_table_find (&t, "new2"));
  cl_table_clear (&t);
}
END_TEST

/* The pages that lie whole in [p, p + len): from *a, how many; how many
 * of them are resident (mincore). */
static size_t
whole_pages_at (void *p, size_t len, uintptr_t *a)
{
  const uintptr_t page = 4096;
  *a = ((uintptr_t) p + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t) p + len) & ~(page - 1);
  return (end - *a) / page;
}

static size_t
whole_pages (void *p, size_t len)
{
  uintptr_t a;
  return whole_pages_at (p, len, &a);
}

static size_t
resident_pages (void *p, size_t len)
{
  uintptr_t a;
  size_t n = whole_pages_at (p, len, &a), in = 0;
  unsigned char *vec = malloc (n);
  ck_assert_ptr_nonnull (vec);
  ck_assert_int_eq (mincore ((void *) a, n * 4096, vec), 0);
  for (size_t i = 0; i < n; i++)
    in += vec[i] & 1;
  free (vec);
  return in;
}

/* A slot whose bytes are nearly all other than zero: each string field
 * full (its NUL last), and numbers of (nearly) all ones. */
static void
full_vol (struct cluster_vol *v, int i)
{
  memset (v, 0, sizeof *v);
  memset (v->def.name, 'n', sizeof v->def.name - 1);
  memset (v->def.base, 'b', sizeof v->def.base - 1);
  memset (v->def.cow, 'c', sizeof v->def.cow - 1);
  memset (v->def.cow_ident, 'i', sizeof v->def.cow_ident - 1);
  char id[16];
  int n = snprintf (id, sizeof id, "%05d", i);
  memcpy (v->def.name, id, (size_t) n);
  memcpy (v->def.cow, id, (size_t) n);
  memcpy (v->def.cow_ident, id, (size_t) n);
  v->def.chunk_size = v->def.commit = UINT32_MAX;
  v->owner = UINT32_MAX;
  v->epoch = v->generation = UINT64_MAX - (uint64_t) i;
}

/* A large reserved table is backed by the loop itself, at least half a
 * MiB ahead of the slot it appends (table.c, tbl_back): every page up to
 * a little past
 * the last slot is resident though nothing wrote there, the pages far
 * beyond are not (backed as the table fills, not all at once), and every
 * slot keeps its bytes. */
START_TEST (test_table_backed)
{
  enum
  {
    N = 50000,
    ADDED = 20000
  };
  void *probe = mmap (NULL, 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne (probe, MAP_FAILED);
  bool populate = madvise (probe, 4096, MADV_POPULATE_WRITE) == 0;
  munmap (probe, 4096);
  struct cl_table t = { 0 };
  ck_assert_int_eq (cl_table_reserve (&t, N), 0);
  struct cluster_vol v;
  for (int i = 0; i < ADDED; i++)
    {
      full_vol (&v, i);
      ck_assert_ptr_nonnull (cl_table_add (&t, &v));
    }
  const size_t ahead = 448u << 10; /* less than TBL_AHEAD / 2 */
  uint8_t *used_end = (uint8_t *) (t.vols + ADDED);
  size_t beyond = (size_t) ((uint8_t *) (t.vols + N) - used_end);
  ck_assert_uint_gt (beyond, (4u << 20));
  if (populate) /* else the kernel (or valgrind) cannot tell */
    {
      ck_assert_uint_eq (resident_pages (used_end, ahead),
                         whole_pages (used_end, ahead));
      ck_assert_uint_eq (
          resident_pages (used_end + (2u << 20), beyond - (2u << 20)), 0);
    }
  for (int i = 0; i < ADDED; i++)
    {
      full_vol (&v, i);
      ck_assert_int_eq (memcmp (&t.vols[i], &v, sizeof v), 0);
      ck_assert_ptr_eq (cl_table_find (&t, v.def.name), &t.vols[i]);
    }
  cl_table_clear (&t);
  ck_assert_uint_eq (t.backed, 0);
}
END_TEST

/* strmap against a model: puts (new keys and replacements) and deletes
 * (present and absent) in random order while the map grows several
 * times.  A growth moves at most STRMAP_STEP old slots per put or delete
 * and is over before the next one; every key is found, with its latest
 * item, and no deleted key is, also in the middle of a move; a reserve
 * ends a move at once. */
#define SM_KEYS 6000

struct sm_item
{
  char key[16];
  unsigned version;
};

static const char *
sm_key (const void *item, const void *ctx)
{
  (void) ctx;
  return ((const struct sm_item *) item)->key;
}

static void
sm_check_all (const struct strmap *m, struct sm_item **model)
{
  size_t n = 0;
  for (unsigned k = 0; k < SM_KEYS; k++)
    {
      char key[16];
      snprintf (key, sizeof key, "k%u", k);
      ck_assert_ptr_eq (strmap_get (m, key), model[k]);
      n += model[k] != NULL;
    }
  ck_assert_uint_eq (m->n, n);
}

START_TEST (test_strmap_growth)
{
  struct strmap m = { .key = sm_key };
  struct sm_item **model = calloc (SM_KEYS, sizeof *model);
  struct sm_item *items = calloc (4 * SM_KEYS, sizeof *items);
  unsigned next = 0, growths = 0, checked_mid = 0;
  srand (7);
  for (unsigned op = 0; op < 3 * SM_KEYS; op++)
    {
      unsigned k = (unsigned) rand () % (op < SM_KEYS ? op + 1 : SM_KEYS);
      size_t cap = m.cap, moved = m.moved;
      void **old = m.old;
      if (rand () % 4 == 0)
        {
          char key[16];
          snprintf (key, sizeof key, "k%u", k);
          strmap_del (&m, key);
          model[k] = NULL;
        }
      else
        {
          struct sm_item *it = &items[next++ % (4 * SM_KEYS)];
          snprintf (it->key, sizeof it->key, "k%u", k);
          it->version = op;
          ck_assert_int_eq (strmap_put (&m, it), 0);
          model[k] = it;
        }
      if (m.cap != cap && cap)
        {
          /* A growth: the old array was empty by then (it is the one
           * just left), and nothing of the new one moved yet. */
          ck_assert_ptr_null (old);
          ck_assert_ptr_nonnull (m.old);
          ck_assert_uint_eq (m.moved, 0);
          growths++;
        }
      else if (old && m.old)
        ck_assert_uint_le (m.moved - moved, STRMAP_STEP);
      if (m.old && m.moved > m.ocap / 2 && checked_mid < 4)
        {
          sm_check_all (&m, model); /* half moved */
          checked_mid++;
        }
      else if (op % 4999 == 0)
        sm_check_all (&m, model);
    }
  ck_assert_uint_ge (growths, 6);
  ck_assert_uint_ge (checked_mid, 4);
  sm_check_all (&m, model);
  /* A reserve ends a move under way; the items stay. */
  ck_assert_int_eq (strmap_reserve (&m, 8 * SM_KEYS), 0);
  ck_assert_ptr_null (m.old);
  sm_check_all (&m, model);
  strmap_free (&m);
  free (items);
  free (model);
}
END_TEST

/* A map's slots of 64 KiB or more are populated when they are made: no
 * insert takes a page fault (common/strmap.h, strmap_slots). */
START_TEST (test_strmap_populated)
{
  struct sm_item it = { "k", 0 };
  struct strmap m = { .key = sm_key };
  ck_assert_int_eq (strmap_reserve (&m, 5000), 0);
  size_t bytes = m.cap * sizeof *m.slot;
  ck_assert_uint_ge (bytes, 64u << 10);
  ck_assert_uint_lt (bytes, 1u << 20);
  ck_assert_uint_eq (resident_pages (m.slot, bytes),
                     whole_pages (m.slot, bytes));
  ck_assert_int_eq (strmap_put (&m, &it), 0);
  ck_assert_ptr_eq (strmap_get (&m, "k"), &it);
  strmap_free (&m);
}
END_TEST

START_TEST (test_acquire_handoff_release)
{
  struct cl_table t = { 0 };
  struct seen s1 = { 0 };
  define (&t, &s1, false);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s1, 1);
  struct cluster_vol *v = cl_table_find (&t, "vm1");
  ck_assert_int_eq (v->state, CL_OWNED);
  ck_assert_uint_eq (v->owner, 1);
  ck_assert_uint_eq (v->epoch, 1);
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s1, 1);
  ck_assert_int_eq (v->state, CL_HANDING_OFF);
  ck_assert_uint_eq (s1.handoff_requests, 1); /* node 1 is asked */
  ck_assert_uint_eq (s1.handoff_to, 2);
  apply (&t, 3, msg (CL_MSG_HANDOFF, "vm1", 3, 5), &s1, 1); /* not owner */
  ck_assert_uint_eq (v->owner, 1);
  apply (&t, 1, msg (CL_MSG_HANDOFF, "vm1", 2, 5), &s1, 1);
  ck_assert_uint_eq (v->owner, 2);
  ck_assert_uint_eq (v->epoch, 2);
  ck_assert_uint_eq (s1.last_gen, 5);
  apply (&t, 2, msg (CL_MSG_RELEASE, "vm1", 0, 8), &s1, 1);
  ck_assert_int_eq (v->state, CL_UNOWNED);
  ck_assert_uint_eq (v->generation, 8);
  cl_table_clear (&t);
}
END_TEST

/* The owner's storage failed the handoff's clean mark: HANDOFF_REFUSED
 * gives the volume back to it as owned (same epoch: it never stopped
 * owning it), and only the requester hears why, in one sentence; one
 * from another node than the owner, or for another requester, changes
 * nothing.  Every member's table ends the same. */
START_TEST (test_handoff_refused)
{
  struct cl_table t = { 0 }, t2 = { 0 };
  struct seen s1 = { 0 }, s2 = { 0 };
  define (&t, &s1, false);
  define (&t2, &s2, false);
  struct cl_table *tt[] = { &t, &t2 };
  struct seen *ss[] = { &s1, &s2 };
  for (int i = 0; i < 2; i++)
    {
      apply (tt[i], 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), ss[i], i + 1);
      apply (tt[i], 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), ss[i], i + 1);
      ck_assert_int_eq (cl_table_find (tt[i], "vm1")->state, CL_HANDING_OFF);
    }
  struct cl_msg r = msg (CL_MSG_HANDOFF_REFUSED, "vm1", 2, 0);
  r.error = EIO;
  for (int i = 0; i < 2; i++)
    {
      apply (tt[i], 3, r, ss[i], i + 1); /* not the owner */
      struct cl_msg other = r;
      other.node = 3; /* not the requester */
      apply (tt[i], 1, other, ss[i], i + 1);
      ck_assert_int_eq (cl_table_find (tt[i], "vm1")->state, CL_HANDING_OFF);
      apply (tt[i], 1, r, ss[i], i + 1);
      struct cluster_vol *v = cl_table_find (tt[i], "vm1");
      ck_assert_int_eq (v->state, CL_OWNED);
      ck_assert_uint_eq (v->owner, 1);
      ck_assert_uint_eq (v->requester, 0);
      ck_assert_uint_eq (v->epoch, 1);
    }
  ck_assert_uint_eq (s1.errors, 0);
  ck_assert_uint_eq (s2.errors, 1);
  ck_assert_str_eq (s2.last_error,
                    "volume vm1: node 1 cannot hand it over: making it clean "
                    "on its CoW device failed (Input/output error); node 1 "
                    "keeps serving it");
  ck_assert_mem_eq (cl_table_find (&t, "vm1"), cl_table_find (&t2, "vm1"),
                    sizeof (struct cluster_vol));
  /* The next request is a fresh handoff, and refusals are no bounce: a
   * requester retrying a failing owner more than CL_BOUNCE_LIMIT times in
   * the window is refused for the storage each time, never as bouncing. */
  for (int k = 0; k < 2 * CL_BOUNCE_LIMIT; k++)
    {
      apply (&t2, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s2, 2);
      ck_assert_int_eq (cl_table_find (&t2, "vm1")->state, CL_HANDING_OFF);
      ck_assert_uint_eq (s2.errors, 1 + (unsigned) k);
      apply (&t2, 1, r, &s2, 2);
      ck_assert_int_eq (cl_table_find (&t2, "vm1")->state, CL_OWNED);
      ck_assert (!cl_table_find (&t2, "vm1")->bouncing);
    }
  ck_assert_uint_eq (cl_table_find (&t2, "vm1")->bounce_count, 0);
  ck_assert_uint_eq (s2.errors, 1 + 2 * CL_BOUNCE_LIMIT);
  ck_assert (strstr (s2.last_error, "cannot hand it over"));
  cl_table_clear (&t);
  cl_table_clear (&t2);
}
END_TEST

/* A DEFINE of vol from sender with this CoW device and identity. */
static struct cl_msg
define_msg (const char *vol, const char *cow, const char *ident)
{
  struct cl_msg m = msg (CL_MSG_DEFINE, vol, 0, 0);
  strcpy (m.def.base, "iscsi://10.0.0.1/iqn.x/1");
  strcpy (m.def.cow, cow);
  strcpy (m.def.cow_ident, ident);
  return m;
}

/* m is refused as naming vm1's CoW device (the error count goes to
 * errors); vm1 keeps owner 1. */
static void
refused_as_vm1s (struct cl_table *t, struct seen *s, const struct cl_msg *m,
                 uint32_t sender, unsigned errors)
{
  char want[1024];
  apply (t, sender, *m, s, sender);
  ck_assert_ptr_null (cl_table_find (t, m->def.name));
  ck_assert_uint_eq (s->errors, errors);
  snprintf (want, sizeof want,
            "volume %s: CoW device %s is the CoW device "
            "of volume vm1 already; a CoW device belongs to one volume",
            m->def.name, m->def.cow);
  ck_assert_str_eq (s->last_error, want);
  ck_assert_uint_eq (cl_table_find (t, "vm1")->owner, 1);
}

/* A second definition naming vm1's CoW device is refused everywhere,
 * with the sentence on the node that sent it; vm1 is untouched.  So is
 * one naming vm1's LUN through another portal (another URL, the same VPD
 * identity), until vm1 is deleted. */
START_TEST (test_define_same_cow)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  define (&t, &s, false);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 1);
  struct cl_msg m = define_msg ("vm2", "iscsi://10.0.0.1/iqn.x/2", "");
  refused_as_vm1s (&t, &s, &m, 2, 1);
  strcpy (m.def.cow, "iscsi://10.0.0.1/iqn.x/3"); /* its own: fine */
  apply (&t, 2, m, &s, 2);
  ck_assert_ptr_nonnull (cl_table_find (&t, "vm2"));
  define (&t, &s, false); /* vm1 redefined as it is: fine */
  ck_assert_uint_eq (s.errors, 1);
  m = define_msg ("vm3", "iscsi://10.0.9.9/iqn.x/2",
                  "naa.60000000000000000e00000000010002");
  refused_as_vm1s (&t, &s, &m, 3, 2);
  apply (&t, 1,
         msg (CL_MSG_RELEASE, "vm1", 0, cl_table_find (&t, "vm1")->generation),
         &s, 1);
  apply (&t, 1, msg (CL_MSG_UNDEFINE, "vm1", 0, 0), &s, 1);
  ck_assert_ptr_null (cl_table_find (&t, "vm1"));
  apply (&t, 3, m, &s, 3);
  ck_assert_ptr_nonnull (cl_table_find (&t, "vm3"));
  ck_assert_uint_eq (s.errors, 2);
  cl_table_clear (&t);
}
END_TEST

START_TEST (test_exclusive_and_migrate)
{
  struct cl_table t = { 0 };
  struct seen s2 = { 0 };
  define (&t, &s2, true);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s2, 2);
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s2, 2);
  ck_assert_uint_eq (s2.errors, 1);
  ck_assert_ptr_nonnull (strstr (s2.last_error, "exclusive"));
  apply (&t, 3, msg (CL_MSG_MIGRATE, "vm1", 2, 0), &s2, 2);
  ck_assert_int_eq (cl_table_find (&t, "vm1")->state, CL_HANDING_OFF);
  ck_assert_uint_eq (cl_table_find (&t, "vm1")->requester, 2);
  cl_table_clear (&t);
}
END_TEST

/* vm1 moves by request to the node that does not own it (its ACQUIRE at
 * time ms, then the owner's HANDOFF unless the group refused): true when
 * it moved. */
static bool
move_at (struct cl_table *t, struct seen *s, uint64_t ms)
{
  struct cluster_vol *v = cl_table_find (t, "vm1");
  uint32_t owner = v->owner, other = 3 - owner;
  struct cl_msg m = msg (CL_MSG_ACQUIRE, "vm1", 0, 0);
  m.time_ms = ms;
  apply (t, other, m, s, other);
  if (v->state != CL_HANDING_OFF)
    return false;
  m = msg (CL_MSG_HANDOFF, "vm1", other, v->generation + 1);
  m.time_ms = ms;
  apply (t, owner, m, s, other);
  return v->owner == other;
}

START_TEST (test_bounce)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  define (&t, &s, false);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 1);
  for (int i = 0; i < 10 && move_at (&t, &s, 1000); i++)
    ;
  uint32_t owner = cl_table_find (&t, "vm1")->owner;
  ck_assert (cl_table_find (&t, "vm1")->bouncing);
  ck_assert_ptr_nonnull (strstr (s.last_error, "bouncing between nodes"));
  apply (&t, 1, msg (CL_MSG_MIGRATE, "vm1", 3 - owner, 0), &s, 1);
  ck_assert (!cl_table_find (&t, "vm1")->bouncing);
  cl_table_clear (&t);
}
END_TEST

/* A migrate ends a bounce and the count starts afresh: a window left
 * over from moves before the migrate does not end in the middle of the
 * next ones (seven moves in 2.4 s after it are a bounce); nor does a
 * release leave a count that the next move tips over. */
START_TEST (test_bounce_fresh_count)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  define (&t, &s, false);
  struct cl_msg m = msg (CL_MSG_ACQUIRE, "vm1", 0, 0);
  apply (&t, 1, m, &s, 1);
  for (uint64_t ms = 1000; ms < 4000; ms += 1000)
    ck_assert (move_at (&t, &s, ms));
  m = msg (CL_MSG_MIGRATE, "vm1", 1, 0);
  m.time_ms = 5000;
  apply (&t, 2, m, &s, 1);
  struct cluster_vol *v = cl_table_find (&t, "vm1");
  if (v->state == CL_HANDING_OFF)
    {
      m = msg (CL_MSG_HANDOFF, "vm1", 1, v->generation + 1);
      apply (&t, v->owner, m, &s, 1);
    }
  ck_assert_uint_eq (v->owner, 1);
  bounce_eq (v, 0, 0, 0, 0);
  int moves = 0;
  for (uint64_t ms = 9000; ms <= 11400; ms += 400)
    moves += move_at (&t, &s, ms);
  ck_assert_int_eq (moves, 6);
  ck_assert (v->bouncing);
  ck_assert_uint_eq (v->bounce_count, 7);
  ck_assert_uint_eq (v->bounce_since_ms, 9000);
  ck_assert_ptr_nonnull (strstr (s.last_error, "bouncing between nodes"));
  /* The owner detaches: released, and the count with it. */
  m = msg (CL_MSG_RELEASE, "vm1", 0, v->generation);
  m.time_ms = 11500;
  apply (&t, v->owner, m, &s, 1);
  ck_assert_int_eq (v->state, CL_UNOWNED);
  ck_assert (!v->bouncing);
  bounce_eq (v, 0, 0, 0, 0);
  m = msg (CL_MSG_ACQUIRE, "vm1", 0, 0);
  m.time_ms = 11600;
  apply (&t, 2, m, &s, 2);
  ck_assert (move_at (&t, &s, 11700));
  ck_assert (!v->bouncing);
  bounce_eq (v, 2, 1, 1, 11700);
  cl_table_clear (&t);
}
END_TEST

/* A node that joins in the middle of a bounce window takes the count
 * with the table, whole or as states: it then decides the next requests
 * as the members it joined do, to the byte. */
START_TEST (test_bounce_joiner)
{
  for (int states = 0; states < 2; states++)
    {
      struct cl_table a = { 0 }, b = { 0 };
      struct seen sa = { 0 }, sb = { 0 };
      define (&a, &sa, false);
      apply (&a, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &sa, 1);
      for (uint64_t ms = 1000; ms < 5000; ms += 1000)
        ck_assert (move_at (&a, &sa, ms));
      ck_assert_uint_eq (cl_table_find (&a, "vm1")->bounce_count, 4);
      struct cl_msg p
          = { .type = states ? CL_MSG_SYNC_STATES : CL_MSG_SYNC_PIECE,
              .vols = a.vols,
              .nvols = (uint32_t) a.n,
              .total = (uint32_t) a.n,
              .digest = a.digest,
              .last = true };
      size_t len;
      void *buf = cl_msg_encode (&p, &len);
      struct cl_msg d;
      ck_assert_int_eq (cl_msg_decode (buf, len, &d), 0);
      free (buf);
      for (uint32_t i = 0; i < d.nvols; i++)
        {
          if (states) /* the joiner's own definition */
            d.vols[i].def = a.vols[i].def;
          ck_assert_ptr_nonnull (cl_table_add (&b, &d.vols[i]));
        }
      cl_msg_free (&d);
      ck_assert_int_eq (memcmp (a.vols, b.vols, a.n * sizeof *a.vols), 0);
      int ma = 0, mb = 0;
      for (uint64_t ms = 5000; ms < 9000; ms += 500)
        {
          ma += move_at (&a, &sa, ms);
          mb += move_at (&b, &sb, ms);
        }
      ck_assert_int_eq (ma, 2);
      ck_assert_int_eq (mb, 2);
      ck_assert (cl_table_find (&b, "vm1")->bouncing);
      ck_assert_int_eq (memcmp (a.vols, b.vols, a.n * sizeof *a.vols), 0);
      cl_table_clear (&a);
      cl_table_clear (&b);
    }
}
END_TEST

START_TEST (test_node_down_fencing)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  struct cl_effects fx = { &cbs, &s, 2 };
  define (&t, &s, false);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  cl_table_member_left (&t, 1, false, &fx); /* agent restart: kept */
  ck_assert_int_eq (cl_table_find (&t, "vm1")->state, CL_OWNED);
  cl_table_member_left (&t, 1, true, &fx); /* node down */
  struct cluster_vol *v = cl_table_find (&t, "vm1");
  ck_assert_int_eq (v->state, CL_FENCING);
  ck_assert_uint_eq (s.fencing, 1);
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  ck_assert_int_eq (v->state, CL_FENCING); /* refused */
  ck_assert_ptr_nonnull (strstr (s.last_error, "fenced"));
  struct cl_msg c = { .type = CL_MSG_FENCE_CONFIRM, .node = 1 };
  apply (&t, 2, c, &s, 2);
  ck_assert_int_eq (v->state, CL_UNOWNED);
  ck_assert_uint_eq (v->generation, 0);
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  ck_assert_uint_eq (v->owner, 2);
  ck_assert_uint_eq (v->epoch, 2);
  cl_table_clear (&t);
}
END_TEST

/* FENCED(n) from the fencer: volumes in fencing for n are released, and
 * so is a volume n still owns as a live member (a hung agent fenced by
 * hand); a handoff to n is called off.  Unknown future types are NOPs. */
START_TEST (test_fenced)
{
  struct cl_table t = { 0 };
  struct seen s = { 0 };
  struct cl_effects fx = { &cbs, &s, 2 };
  define (&t, &s, false);
  apply (&t, 1, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  cl_table_member_left (&t, 1, true, &fx);
  struct cluster_vol *v = cl_table_find (&t, "vm1");
  ck_assert_int_eq (v->state, CL_FENCING);
  struct cl_msg f = { .type = CL_MSG_FENCED, .node = 1 };
  apply (&t, 2, f, &s, 2);
  ck_assert_int_eq (v->state, CL_UNOWNED);
  ck_assert_uint_eq (s.fenced, 1);
  ck_assert_uint_eq (s.fenced_node, 1);
  ck_assert_uint_eq (s.fenced_by, 2);
  ck_assert (s.fenced_storage);
  /* A live owner fenced by hand. */
  apply (&t, 3, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  ck_assert_uint_eq (v->owner, 3);
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  ck_assert_int_eq (v->state, CL_HANDING_OFF);
  f.node = 3;
  apply (&t, 2, f, &s, 2);
  ck_assert_int_eq (v->state, CL_UNOWNED);
  ck_assert_uint_eq (v->owner, 0);
  /* A handoff to a node that is fenced is called off. */
  apply (&t, 2, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  apply (&t, 4, msg (CL_MSG_ACQUIRE, "vm1", 0, 0), &s, 2);
  ck_assert_int_eq (v->state, CL_HANDING_OFF);
  f.node = 4;
  apply (&t, 1, f, &s, 2);
  ck_assert_int_eq (v->state, CL_OWNED);
  ck_assert_uint_eq (v->owner, 2);
  apply (&t, 2, msg (CL_MSG_HANDOFF, "vm1", 4, 7), &s, 2);
  ck_assert_uint_eq (v->owner, 2); /* not to the fenced node */
  /* A type from a newer agent decodes as a no-op. */
  uint8_t buf[CL_HDR_SIZE + 4] = { CL_MSG_VERSION, 0, 99, 0, sizeof buf };
  struct cl_msg d;
  ck_assert_int_eq (cl_msg_decode (buf, sizeof buf, &d), 0);
  ck_assert_uint_eq (d.type, CL_MSG_NOP);
  /* FENCED with a short body is malformed. */
  size_t len;
  void *enc = cl_msg_encode (&f, &len);
  ck_assert_int_eq (cl_msg_decode (enc, len - 1, &d), -EINVAL);
  free (enc);
  cl_table_clear (&t);
}
END_TEST

START_TEST (test_determinism)
{
  struct cl_table a = { 0 }, b = { 0 };
  struct seen sa = { 0 }, sb = { 0 };
  struct cl_effects fa = { &cbs, &sa, 1 }, fb = { &cbs, &sb, 2 };
  define (&a, &sa, false);
  define (&b, &sb, false);
  srand (3);
  for (int i = 0; i < 500; i++)
    {
      uint16_t types[] = { CL_MSG_ACQUIRE, CL_MSG_HANDOFF, CL_MSG_RELEASE,
                           CL_MSG_MIGRATE, CL_MSG_FENCE_CONFIRM };
      uint32_t sender = 1 + (uint32_t) (rand () % 3);
      struct cl_msg m
          = msg (types[rand () % 5], "vm1", 1 + (uint32_t) (rand () % 3),
                 (uint64_t) (rand () % 9));
      m.time_ms = (uint64_t) i * 700;
      apply (&a, sender, m, &sa, 1);
      apply (&b, sender, m, &sb, 2);
      if (rand () % 50 == 0)
        {
          uint32_t n = 1 + (uint32_t) (rand () % 3);
          cl_table_member_left (&a, n, true, &fa);
          cl_table_member_left (&b, n, true, &fb);
        }
    }
  ck_assert_uint_eq (a.n, b.n);
  ck_assert_int_eq (memcmp (a.vols, b.vols, a.n * sizeof *a.vols), 0);
  cl_table_clear (&a);
  cl_table_clear (&b);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("cluster");
  TCase *tc = tcase_create ("table");
  tcase_add_test (tc, test_codec);
  tcase_add_test (tc, test_piece_codec);
  tcase_add_test (tc, test_states_codec);
  tcase_add_test (tc, test_table_digest);
  tcase_add_test (tc, test_piece_bound);
  tcase_add_test (tc, test_define_many);
  tcase_add_test (tc, test_table_index);
  tcase_add_test (tc, test_table_backed);
  tcase_add_test (tc, test_strmap_growth);
  tcase_add_test (tc, test_strmap_populated);
  tcase_add_test (tc, test_undefine_owned);
  tcase_add_test (tc, test_acquire_handoff_release);
  tcase_add_test (tc, test_handoff_refused);
  tcase_add_test (tc, test_exclusive_and_migrate);
  tcase_add_test (tc, test_bounce);
  tcase_add_test (tc, test_bounce_fresh_count);
  tcase_add_test (tc, test_bounce_joiner);
  tcase_add_test (tc, test_node_down_fencing);
  tcase_add_test (tc, test_fenced);
  tcase_add_test (tc, test_determinism);
  tcase_add_test (tc, test_define_same_cow);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
