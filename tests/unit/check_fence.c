/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_fence.c: unit tests of libcowfence (fence/fence.h), without a
 * target.
 *
 * What is covered, and how:
 *   - keys: fixed values (the layout is on-LUN state and must never
 *     change), distinct keys for nodes and clusters, node id decode;
 *   - the SG_IO codecs: PR OUT / PR IN CDBs and the parameter list byte by
 *     byte, READ KEYS and READ RESERVATION payloads (normal, cut short,
 *     malformed), fixed and descriptor sense, status sentences;
 *   - the logic of pr.c on a fake transport: a one-nexus target with a
 *     registration table and a reservation, which can answer PREEMPT AND
 *     ABORT with ILLEGAL REQUEST (as tgtd does), queue UNIT ATTENTIONs, and
 *     logs the service actions it was sent.
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fence-int.h"

/* Keys */

START_TEST (test_key_values)
{
  ck_assert_uint_eq (fence_key ("prod", 3), 0xed3e317400000003ull);
  ck_assert_uint_eq (fence_key ("cowherd", 1), 0x3ab8942100000001ull);
  ck_assert_uint_eq (fence_key ("", 0xffffffffu), 0x811c9dc5ffffffffull);
  ck_assert_uint_eq (fence_key ("prod", 0), 0);
}
END_TEST

START_TEST (test_key_distinct)
{
  ck_assert_uint_ne (fence_key ("prod", 1), fence_key ("prod", 2));
  ck_assert_uint_ne (fence_key ("prod", 1), fence_key ("test", 1));
  ck_assert_uint_ne (fence_key ("ab", 1), fence_key ("ba", 1));
  ck_assert_uint_eq (fence_key ("prod", 7), fence_key ("prod", 7));
}
END_TEST

START_TEST (test_key_decode)
{
  ck_assert_uint_eq (fence_key_nodeid (fence_key ("prod", 3)), 3);
  ck_assert_uint_eq (fence_key_nodeid (fence_key ("x", 0x12345678)),
                     0x12345678);
  ck_assert (fence_key_in_cluster (fence_key ("prod", 3), "prod"));
  ck_assert (!fence_key_in_cluster (fence_key ("prod", 3), "test"));
  ck_assert (!fence_key_in_cluster (0, "prod"));
}
END_TEST

/* CDBs and the parameter list */

START_TEST (test_prout_cdb)
{
  struct fence_prout p = { .sa = FENCE_SA_PREEMPT_AND_ABORT,
                           .type = 5,
                           .key = 0x0102030405060708ull,
                           .sa_key = 0x1112131415161718ull };
  const uint8_t want_cdb[] = { 0x5f, 0x05, 0x05, 0, 0, 0, 0, 0, 24, 0 };
  const uint8_t want_params[]
      = { 1,    2,    3,    4,    5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14,
          0x15, 0x16, 0x17, 0x18, 0, 0, 0, 0, 0,    0,    0,    0 };
  uint8_t cdb[FENCE_CDB_LEN], params[FENCE_PROUT_PARAM_LEN];

  fence_sg_prout_cdb (cdb, &p);
  fence_sg_prout_params (params, &p);
  ck_assert_mem_eq (cdb, want_cdb, sizeof want_cdb);
  ck_assert_mem_eq (params, want_params, sizeof want_params);

  p.sa = FENCE_SA_REGISTER_IGNORE;
  p.type = 0;
  fence_sg_prout_cdb (cdb, &p);
  ck_assert_uint_eq (cdb[1], 6);
  ck_assert_uint_eq (cdb[2], 0);
}
END_TEST

START_TEST (test_prin_cdb)
{
  const uint8_t want[] = { 0x5e, 0x01, 0, 0, 0, 0, 0, 0x12, 0x34, 0 };
  uint8_t cdb[FENCE_CDB_LEN];

  fence_sg_prin_cdb (cdb, FENCE_SA_READ_RESERVATION, 0x1234);
  ck_assert_mem_eq (cdb, want, sizeof want);
  fence_sg_prin_cdb (cdb, FENCE_SA_READ_KEYS, 8);
  ck_assert_uint_eq (cdb[1], 0);
  ck_assert_uint_eq (cdb[8], 8);
}
END_TEST

/* Payloads */

static size_t
make_keys (uint8_t *buf, uint32_t gen, const uint64_t *keys, size_t n)
{
  memset (buf, 0, 8);
  buf[0] = gen >> 24, buf[1] = gen >> 16, buf[2] = gen >> 8, buf[3] = gen;
  buf[7] = n * 8;
  for (size_t i = 0; i < n; i++)
    be64_put (buf + 8 + 8 * i, keys[i]);
  return 8 + 8 * n;
}

START_TEST (test_parse_keys)
{
  const uint64_t in[3] = { 0xaa00000001ull, 0xbb00000002ull, 3 };
  uint64_t out[3] = { 0 };
  uint8_t buf[64];
  uint32_t gen;
  size_t len = make_keys (buf, 0x01020304, in, 3), n;

  ck_assert_int_eq (fence_parse_keys (buf, len, out, 3, &n, &gen), 0);
  ck_assert_uint_eq (gen, 0x01020304);
  ck_assert_uint_eq (n, 3);
  ck_assert_mem_eq (out, in, sizeof in);

  /* Fewer slots than keys, and a reply cut by the allocation length. */
  memset (out, 0, sizeof out);
  ck_assert_int_eq (fence_parse_keys (buf, len, out, 1, &n, NULL), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (out[0], in[0]);
  ck_assert_uint_eq (out[1], 0);
  ck_assert_int_eq (fence_parse_keys (buf, 8 + 8 + 4, out, 3, &n, NULL), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (out[1], 0);

  /* Empty, short, and a length that is no multiple of 8. */
  len = make_keys (buf, 7, in, 0);
  ck_assert_int_eq (fence_parse_keys (buf, len, out, 3, &n, &gen), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_int_eq (fence_parse_keys (buf, 7, out, 3, &n, &gen), -1);
  buf[7] = 12;
  ck_assert_int_eq (fence_parse_keys (buf, 20, out, 3, &n, &gen), -1);
}
END_TEST

START_TEST (test_parse_reservation)
{
  uint8_t buf[24] = { 0, 0, 0, 9, 0, 0, 0, 16 };
  uint64_t holder;
  int type;
  bool held;

  be64_put (buf + 8, 0xed3e317400000003ull);
  buf[21] = 0x05; /* scope 0, type 5 */
  ck_assert_int_eq (fence_parse_reservation (buf, 24, &holder, &type, &held),
                    0);
  ck_assert (held);
  ck_assert_uint_eq (holder, 0xed3e317400000003ull);
  ck_assert_int_eq (type, 5);

  ck_assert_int_eq (fence_parse_reservation (buf, 20, &holder, &type, &held),
                    -1);
  ck_assert_int_eq (fence_parse_reservation (buf, 4, &holder, &type, &held),
                    -1);
  buf[7] = 0;
  ck_assert_int_eq (fence_parse_reservation (buf, 8, &holder, &type, &held), 0);
  ck_assert (!held);
  ck_assert_uint_eq (holder, 0);
}
END_TEST

/* Sense and status sentences */

START_TEST (test_sense_fixed)
{
  uint8_t sb[18] = { 0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x03 };
  struct fence_status st = { 0 };

  ck_assert (fence_sense_parse (sb, sizeof sb, &st));
  ck_assert (st.have_sense);
  ck_assert_uint_eq (st.key, FENCE_SENSE_UNIT_ATTENTION);
  ck_assert_uint_eq (st.asc, 0x2a);
  ck_assert_uint_eq (st.ascq, 0x03);

  /* Too short for ASC/ASCQ: the key alone. */
  memset (&st, 0, sizeof st);
  ck_assert (fence_sense_parse (sb, 8, &st));
  ck_assert_uint_eq (st.key, 6);
  ck_assert_uint_eq (st.asc, 0);
}
END_TEST

START_TEST (test_sense_descriptor)
{
  const uint8_t sb[8] = { 0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0 };
  const uint8_t bad[4] = { 0x7f, 1, 2, 3 };
  struct fence_status st = { 0 };

  ck_assert (fence_sense_parse (sb, sizeof sb, &st));
  ck_assert_uint_eq (st.key, FENCE_SENSE_ILLEGAL_REQUEST);
  ck_assert_uint_eq (st.asc, 0x24);
  ck_assert_uint_eq (st.ascq, 0);
  memset (&st, 0, sizeof st);
  ck_assert (!fence_sense_parse (sb, 3, &st));
  ck_assert (!fence_sense_parse (bad, sizeof bad, &st));
  ck_assert (!fence_sense_parse (sb, 0, &st));
  ck_assert (!st.have_sense);
}
END_TEST

START_TEST (test_status_str)
{
  struct fence_status st = { .status = FENCE_STATUS_CHECK_CONDITION,
                             .have_sense = true,
                             .key = 5,
                             .asc = 0x24 };
  char s[256];

  fence_status_str (&st, s, sizeof s);
  ck_assert_str_eq (s, "CHECK CONDITION, ILLEGAL REQUEST 24/00 "
                       "(invalid field in CDB)");
  st.key = 6, st.asc = 0x2a, st.ascq = 3;
  fence_status_str (&st, s, sizeof s);
  ck_assert_str_eq (s, "CHECK CONDITION, UNIT ATTENTION 2A/03 "
                       "(reservations preempted)");
  st.status = FENCE_STATUS_RESERVATION_CONFLICT;
  fence_status_str (&st, s, sizeof s);
  ck_assert_str_eq (s, "RESERVATION CONFLICT");
}
END_TEST

/* A fake one-nexus target */

#define MOCK_MAX 8

static struct mock
{
  uint64_t keys[MOCK_MAX]; /* keys[0]: ours (0: not registered) */
  bool held;
  uint64_t holder;
  int type;
  uint32_t generation;
  bool reject_pa; /* PREEMPT AND ABORT -> 24/00 */
  int ua_pending;
  int log[32]; /* PR OUT service actions received */
  int nlog;
} m;

static void
mock_check (struct fence_status *st, int key, int asc, int ascq)
{
  st->status = FENCE_STATUS_CHECK_CONDITION;
  st->have_sense = true;
  st->key = key, st->asc = asc, st->ascq = ascq;
}

static bool
mock_ua (struct fence_status *st)
{
  if (m.ua_pending == 0)
    return false;
  m.ua_pending--;
  mock_check (st, FENCE_SENSE_UNIT_ATTENTION, 0x2a, 0x03);
  return true;
}

static int
mock_find (uint64_t key)
{
  for (int i = 1; i < MOCK_MAX; i++)
    if (key && m.keys[i] == key)
      return i;
  return -1;
}

static void
mock_preempt (const struct fence_prout *p, struct fence_status *st)
{
  int i = mock_find (p->sa_key);

  if (p->sa == FENCE_SA_PREEMPT_AND_ABORT && m.reject_pa)
    return mock_check (st, FENCE_SENSE_ILLEGAL_REQUEST, 0x24, 0);
  if (m.keys[0] != p->key || i < 0)
    {
      st->status = FENCE_STATUS_RESERVATION_CONFLICT;
      return;
    }
  m.keys[i] = 0;
  if (m.held && m.holder == p->sa_key)
    m.holder = p->key, m.type = p->type;
}

static void
mock_reserve (const struct fence_prout *p, struct fence_status *st)
{
  if (m.keys[0] != p->key || (m.held && m.holder != p->key))
    st->status = FENCE_STATUS_RESERVATION_CONFLICT;
  else
    m.held = true, m.holder = p->key, m.type = p->type;
}

static int
mock_prout (struct fence_dev *dev, const struct fence_prout *p,
            struct fence_status *st)
{
  (void) dev;
  m.log[m.nlog++] = p->sa;
  if (mock_ua (st))
    return 0;
  m.generation++;
  if (p->sa == FENCE_SA_REGISTER_IGNORE)
    m.keys[0] = p->sa_key;
  else if (p->sa == FENCE_SA_RESERVE)
    mock_reserve (p, st);
  else if (p->sa == FENCE_SA_PREEMPT || p->sa == FENCE_SA_PREEMPT_AND_ABORT)
    mock_preempt (p, st);
  else
    mock_check (st, FENCE_SENSE_ILLEGAL_REQUEST, 0x24, 0);
  return 0;
}

static int
mock_prin (struct fence_dev *dev, enum fence_prin_sa sa, uint8_t *buf,
           size_t len, size_t *got, struct fence_status *st)
{
  uint8_t out[8 + 8 * MOCK_MAX] = { 0 };
  size_t n = 0;

  (void) dev;
  if (mock_ua (st))
    return 0;
  if (sa == FENCE_SA_READ_KEYS)
    {
      for (int i = 0; i < MOCK_MAX; i++)
        if (m.keys[i])
          be64_put (out + 8 + 8 * n++, m.keys[i]);
      out[7] = 8 * n;
    }
  else if (m.held)
    {
      out[7] = 16;
      be64_put (out + 8, m.holder);
      out[21] = m.type;
      n = 2;
    }
  out[3] = m.generation;
  *got = 8 + 8 * n < len ? 8 + 8 * n : len;
  memcpy (buf, out, *got);
  return 0;
}

static const struct fence_ops mock_ops
    = { .prout = mock_prout, .prin = mock_prin };
static struct fence_dev *dev;
static const uint64_t k1 = 0xed3e317400000001ull, k2 = 0xed3e317400000002ull,
                      k3 = 0xed3e317400000003ull;

static void
mock_setup (void)
{
  memset (&m, 0, sizeof m);
  dev = fence_dev_new (&mock_ops, "mock://lun1");
}

static void
mock_teardown (void)
{
  fence_dev_free (dev);
}

START_TEST (test_register_reserve)
{
  uint64_t holder, keys[4];
  size_t n;
  int type;
  bool held;

  ck_assert_int_eq (fence_register (dev, k2), 0);
  ck_assert_uint_eq (m.keys[0], k2);
  ck_assert_int_eq (fence_reserve (dev, k2), 0);
  ck_assert_int_eq (fence_read_reservation (dev, &holder, &type, &held), 0);
  ck_assert (held);
  ck_assert_uint_eq (holder, k2);
  ck_assert_int_eq (type, 5);
  /* Somebody else's type 5 reservation is as good as ours. */
  m.holder = k1;
  m.nlog = 0;
  ck_assert_int_eq (fence_reserve (dev, k2), 0);
  ck_assert_int_eq (m.nlog, 0);
  m.keys[1] = k1;
  ck_assert_int_eq (fence_read_keys (dev, keys, 4, &n, NULL), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_int_eq (fence_unregister (dev, k2), 0);
  ck_assert_uint_eq (m.keys[0], 0);
}
END_TEST

START_TEST (test_reserve_other_type)
{
  m.keys[0] = k1;
  m.held = true, m.holder = k3, m.type = 3;
  ck_assert_int_eq (fence_reserve (dev, k1), -1);
  ck_assert_int_eq (errno, EBUSY);
  ck_assert_str_eq (fence_last_error (dev),
                    "fence: mock://lun1: the LUN carries a reservation of "
                    "type 3 (EXCLUSIVE ACCESS) held by node 3's key "
                    "0xed3e317400000003, not type 5");
}
END_TEST

START_TEST (test_preempt_fallback_moves_reservation)
{
  m.keys[0] = k2, m.keys[1] = k1, m.keys[2] = k3;
  m.held = true, m.holder = k1, m.type = 5;
  m.reject_pa = true;
  ck_assert_int_eq (fence_preempt (dev, k2, k1), 0);
  ck_assert_int_eq (m.nlog, 2);
  ck_assert_int_eq (m.log[0], FENCE_SA_PREEMPT_AND_ABORT);
  ck_assert_int_eq (m.log[1], FENCE_SA_PREEMPT);
  ck_assert_uint_eq (m.keys[1], 0);
  ck_assert_uint_eq (m.keys[2], k3);
  ck_assert (m.held);
  ck_assert_uint_eq (m.holder, k2);
  ck_assert_int_eq (m.type, 5);
}
END_TEST

START_TEST (test_preempt_and_abort)
{
  m.keys[0] = k2, m.keys[1] = k3;
  m.held = true, m.holder = k2, m.type = 5;
  ck_assert_int_eq (fence_preempt (dev, k2, k3), 0);
  ck_assert_int_eq (m.nlog, 1);
  ck_assert_int_eq (m.log[0], FENCE_SA_PREEMPT_AND_ABORT);
  ck_assert_uint_eq (m.keys[1], 0);
  ck_assert_uint_eq (m.holder, k2);
}
END_TEST

START_TEST (test_preempt_unreserved_lun_gets_reserved)
{
  m.keys[0] = k2, m.keys[1] = k3;
  ck_assert_int_eq (fence_preempt (dev, k2, k3), 0);
  ck_assert (m.held);
  ck_assert_uint_eq (m.holder, k2);
  ck_assert_int_eq (m.log[m.nlog - 1], FENCE_SA_RESERVE);
}
END_TEST

START_TEST (test_preempt_gone_and_unregistered)
{
  m.keys[0] = k2;
  ck_assert_int_eq (fence_preempt (dev, k2, k3), 0); /* already fenced */
  ck_assert_int_eq (m.nlog, 0);
  m.keys[0] = 0, m.keys[1] = k3;
  ck_assert_int_eq (fence_preempt (dev, k2, k3), -1);
  ck_assert_int_eq (errno, ENOENT);
  ck_assert_str_eq (fence_last_error (dev),
                    "fence: mock://lun1: cannot fence: this node's key "
                    "0xed3e317400000002 (node 2) is not registered");
  ck_assert_int_eq (fence_preempt (dev, k2, k2), -1);
  ck_assert_int_eq (errno, EINVAL);
}
END_TEST

START_TEST (test_preempt_conflict_sentence)
{
  /* Our key is listed (registered through another nexus), but this nexus
   * holds k1: the target answers the PREEMPT with RESERVATION CONFLICT. */
  m.keys[0] = k1, m.keys[1] = k3, m.keys[2] = k2;
  m.reject_pa = true;
  ck_assert_int_eq (fence_preempt (dev, k2, k3), -1);
  ck_assert_int_eq (errno, EACCES);
  ck_assert_str_eq (fence_last_error (dev),
                    "fence: mock://lun1: PREEMPT of node 3's key "
                    "0xed3e317400000003 failed: RESERVATION CONFLICT");
  ck_assert_uint_eq (m.keys[1], k3);
}
END_TEST

START_TEST (test_unit_attention_retry)
{
  m.ua_pending = 3;
  ck_assert_int_eq (fence_register (dev, k1), 0);
  ck_assert_int_eq (m.nlog, 4);
  ck_assert_uint_eq (m.keys[0], k1);
  m.ua_pending = 100;
  ck_assert_int_eq (fence_register (dev, k1), -1);
  ck_assert_int_eq (errno, EIO);
  ck_assert_str_eq (fence_last_error (dev),
                    "fence: mock://lun1: REGISTER of node 1's key "
                    "0xed3e317400000001 failed: CHECK CONDITION, UNIT "
                    "ATTENTION 2A/03 (reservations preempted)");
}
END_TEST

START_TEST (test_clear_unsupported)
{
  /* The mock rejects CLEAR: ILLEGAL REQUEST -> EOPNOTSUPP. */
  ck_assert_int_eq (fence_clear (dev, k1), -1);
  ck_assert_int_eq (errno, EOPNOTSUPP);
}
END_TEST

/* The per-LUN procedure (procedure.c) on the fake target. */
START_TEST (test_lun_fences_victim)
{
  char err[256] = "";
  m.keys[1] = k1; /* the victim; we are not yet */
  m.held = true, m.holder = k1, m.type = 5;
  ck_assert_int_eq (fence_lun (dev, k2, k1, false, err, sizeof err),
                    FENCE_LUN_FENCED);
  ck_assert_uint_eq (m.keys[0], k2); /* registered on the way */
  ck_assert_uint_eq (m.keys[1], 0);  /* preempted */
  ck_assert_uint_eq (m.holder, k2);
  ck_assert_str_eq (err, "");
}
END_TEST

START_TEST (test_lun_victim_gone_already)
{
  char err[256] = "";
  m.keys[0] = k2;
  ck_assert_int_eq (fence_lun (dev, k2, k1, true, err, sizeof err),
                    FENCE_LUN_ALREADY);
  ck_assert_int_eq (m.nlog, 0); /* nothing sent */
}
END_TEST

START_TEST (test_lun_self_fenced_stops)
{
  char err[256] = "";
  m.keys[1] = k1; /* ours (k2) was preempted */
  ck_assert_int_eq (fence_lun (dev, k2, k1, true, err, sizeof err),
                    FENCE_LUN_SELF_FENCED);
  ck_assert_int_eq (m.nlog, 0); /* no REGISTER, no PREEMPT */
  ck_assert_uint_eq (m.keys[1], k1);
  ck_assert_str_eq (err, "mock://lun1: this node's own key is gone: it was "
                         "fenced itself");
}
END_TEST

START_TEST (test_lun_error_sentence)
{
  char err[256] = "";
  m.keys[1] = k1;
  m.ua_pending = 100; /* READ KEYS never gets through */
  ck_assert_int_eq (fence_lun (dev, k2, k1, false, err, sizeof err),
                    FENCE_LUN_ERROR);
  ck_assert_str_eq (err, fence_last_error (dev));
  ck_assert_str_eq (err, "fence: mock://lun1: PERSISTENT RESERVE IN READ "
                         "KEYS failed: CHECK "
                         "CONDITION, UNIT ATTENTION 2A/03 (reservations "
                         "preempted)");
  ck_assert_uint_eq (m.keys[1], k1); /* nothing preempted */
}
END_TEST

static Suite *
fence_suite (void)
{
  Suite *s = suite_create ("fence");
  TCase *tc = tcase_create ("keys");

  tcase_add_test (tc, test_key_values);
  tcase_add_test (tc, test_key_distinct);
  tcase_add_test (tc, test_key_decode);
  suite_add_tcase (s, tc);
  tc = tcase_create ("codecs");
  tcase_add_test (tc, test_prout_cdb);
  tcase_add_test (tc, test_prin_cdb);
  tcase_add_test (tc, test_parse_keys);
  tcase_add_test (tc, test_parse_reservation);
  tcase_add_test (tc, test_sense_fixed);
  tcase_add_test (tc, test_sense_descriptor);
  tcase_add_test (tc, test_status_str);
  suite_add_tcase (s, tc);
  tc = tcase_create ("logic");
  tcase_add_checked_fixture (tc, mock_setup, mock_teardown);
  tcase_add_test (tc, test_register_reserve);
  tcase_add_test (tc, test_reserve_other_type);
  tcase_add_test (tc, test_preempt_fallback_moves_reservation);
  tcase_add_test (tc, test_preempt_and_abort);
  tcase_add_test (tc, test_preempt_unreserved_lun_gets_reserved);
  tcase_add_test (tc, test_preempt_gone_and_unregistered);
  tcase_add_test (tc, test_preempt_conflict_sentence);
  tcase_add_test (tc, test_unit_attention_retry);
  tcase_add_test (tc, test_clear_unsupported);
  tcase_add_test (tc, test_lun_fences_victim);
  tcase_add_test (tc, test_lun_victim_gone_already);
  tcase_add_test (tc, test_lun_self_fenced_stops);
  tcase_add_test (tc, test_lun_error_sentence);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (fence_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
