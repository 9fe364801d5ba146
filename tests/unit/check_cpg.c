/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_cpg.c: cluster/cpg.c against a scripted corosync (issue 16).
 *
 * The corosync client calls cpg.c makes (cpg_*, quorum_*, cmap_*) are
 * defined here, so the test decides what corosync says and in which
 * order: totem rings, CPG membership changes, votequorum's notifications,
 * and the delivery of what cpg.c multicasts (its heartbeats).  The
 * property: a node that lost quorum never counts as quorate on a synced
 * table again before it has the quorate side's table, whichever of
 * votequorum's "quorate" and CPG's merge comes first; a volume it held
 * would resume on that table (own.c resumes on quorate and synced).
 * And when both sides of a two_node partition kept quorum: the side whose
 * sender has the lower id gives its table, unless the other side fenced
 * a node of it meanwhile.
 */
#include <config.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <corosync/cmap.h>
#include <corosync/cpg.h>
#include <corosync/quorum.h>
#include <qb/qbloop.h>

#include "cluster-int.h"

/* --- the scripted corosync --- */

static uint32_t me_id = 1; /* this node; the split-merge tests use 3 */
#define ME me_id
#define LEASE_MS 200

static cpg_model_v1_data_t model;
static quorum_callbacks_t qcb;
static int fds[2] = { -1, -1 };
static struct cpg_name group;

struct sent
{
  void *buf;
  size_t len;
};
static struct sent sent[4096];
static size_t nsent;

cs_error_t
cpg_model_initialize (cpg_handle_t *h, cpg_model_t m, cpg_model_data_t *d,
                      void *ctx)
{
  model = *(cpg_model_v1_data_t *) d;
  *h = 1;
  return CS_OK;
}

cs_error_t
cpg_local_get (cpg_handle_t h, unsigned int *node)
{
  *node = ME;
  return CS_OK;
}

cs_error_t
cpg_join (cpg_handle_t h, const struct cpg_name *g)
{
  group = *g;
  return CS_OK;
}

cs_error_t
cpg_leave (cpg_handle_t h, const struct cpg_name *g)
{
  return CS_OK;
}

/* CPG's own descriptor when a test reads CPG (dispatch_defines); else
 * the one the quorum's descriptor also is. */
static int cpg_fds[2] = { -1, -1 };

cs_error_t
cpg_fd_get (cpg_handle_t h, int *fd)
{
  *fd = cpg_fds[0] >= 0 ? cpg_fds[0] : fds[0];
  return CS_OK;
}

/* What corosync has for this node to read: cpg_dispatch delivers one a
 * call (test_dispatch_yields_to_io). */
static struct
{
  void *buf[64];
  size_t len[64];
  size_t head, n;
} inbox;
static unsigned turn_msgs, turn_max, turns;

cs_error_t
cpg_dispatch (cpg_handle_t h, cs_dispatch_flags_t f)
{
  if (inbox.head == inbox.n)
    return CS_ERR_TRY_AGAIN;
  size_t i = inbox.head++;
  turn_msgs++;
  model.cpg_deliver_fn (1, &group, ME, getpid (), inbox.buf[i], inbox.len[i]);
  free (inbox.buf[i]);
  return CS_OK;
}

cs_error_t
cpg_finalize (cpg_handle_t h)
{
  return CS_OK;
}

/* Each multicast takes this long, as a round trip to corosync does. */
static unsigned mcast_us;

cs_error_t
cpg_mcast_joined (cpg_handle_t h, cpg_guarantee_t g, const struct iovec *iov,
                  unsigned int n)
{
  if (mcast_us)
    nanosleep (&(struct timespec){ 0, (long) mcast_us * 1000 }, NULL);
  size_t len = 0;
  for (unsigned i = 0; i < n; i++)
    len += iov[i].iov_len;
  ck_assert_uint_lt (nsent, sizeof sent / sizeof *sent);
  char *buf = malloc (len), *p = buf;
  for (unsigned i = 0; i < n; i++)
    p = (char *) memcpy (p, iov[i].iov_base, iov[i].iov_len) + iov[i].iov_len;
  sent[nsent++] = (struct sent){ buf, len };
  return CS_OK;
}

cs_error_t
quorum_initialize (quorum_handle_t *h, quorum_callbacks_t *cb, uint32_t *type)
{
  qcb = *cb;
  *h = 1;
  *type = 1;
  return CS_OK;
}

cs_error_t
quorum_fd_get (quorum_handle_t h, int *fd)
{
  *fd = fds[0];
  return CS_OK;
}

cs_error_t
quorum_getquorate (quorum_handle_t h, int *q)
{
  *q = 0;
  return CS_OK;
}

cs_error_t
quorum_trackstart (quorum_handle_t h, unsigned int flags)
{
  return CS_OK;
}

cs_error_t
quorum_dispatch (quorum_handle_t h, cs_dispatch_flags_t f)
{
  return CS_OK;
}

cs_error_t
quorum_finalize (quorum_handle_t h)
{
  return CS_OK;
}

cs_error_t
cmap_initialize (cmap_handle_t *h)
{
  return CS_ERR_LIBRARY; /* no totem timings to compare with */
}

cs_error_t
cmap_get_uint32 (cmap_handle_t h, const char *key, uint32_t *v)
{
  return CS_ERR_LIBRARY;
}

cs_error_t
cmap_finalize (cmap_handle_t h)
{
  return CS_OK;
}

/* --- driving it --- */

static qb_loop_t *loop;

static void
stop_loop (void *data)
{
  qb_loop_stop (loop);
}

/* Let cpg.c's timers run (heartbeats, the lease, the transfer). */
static void
run_ms (unsigned ms)
{
  qb_loop_timer_handle t;
  qb_loop_timer_add (loop, QB_LOOP_HIGH, (uint64_t) ms * 1000000ull, NULL,
                     stop_loop, &t);
  qb_loop_run (loop);
}

/* CPG delivers what this node multicast since the last call. */
static void
deliver_mine (void)
{
  for (size_t i = 0; i < nsent; i++)
    {
      model.cpg_deliver_fn (1, &group, ME, getpid (), sent[i].buf, sent[i].len);
      free (sent[i].buf);
    }
  nsent = 0;
}

/* Forget what this node multicast (at the end of a test). */
static void
drop_mine (void)
{
  for (size_t i = 0; i < nsent; i++)
    free (sent[i].buf);
  nsent = 0;
}

static void
deliver_from (uint32_t node, const struct cl_msg *m)
{
  size_t len;
  void *buf = cl_msg_encode (m, &len);
  ck_assert_ptr_nonnull (buf);
  model.cpg_deliver_fn (1, &group, node, 100 + node, buf, len);
  free (buf);
}

static void
totem (uint64_t seq, const uint32_t *nodes, uint32_t n)
{
  struct cpg_ring_id r = { .nodeid = nodes[0], .seq = seq };
  model.cpg_totem_confchg_fn (1, r, n, nodes);
}

static void
confchg (const uint32_t *members, size_t nm, const uint32_t *left, size_t nl,
         const uint32_t *joined, size_t nj)
{
  struct cpg_address m[8], l[8], j[8];
  for (size_t i = 0; i < nm; i++)
    m[i] = (struct cpg_address){ members[i], 100 + members[i], 0 };
  for (size_t i = 0; i < nl; i++)
    l[i] = (struct cpg_address){ left[i], 100 + left[i], CPG_REASON_NODEDOWN };
  for (size_t i = 0; i < nj; i++)
    j[i] = (struct cpg_address){ joined[i], 100 + joined[i], CPG_REASON_JOIN };
  model.cpg_confchg_fn (1, &group, m, nm, l, nl, j, nj);
}

static void
votequorum (bool quorate, uint64_t seq, const uint32_t *nodes, uint32_t n)
{
  qcb.quorum_notify_fn (1, quorate, seq, n, (uint32_t *) nodes);
}

/* What cowd would do: resume held volumes when quorate on a synced
 * table.  Every such moment before the quorate side's table came is a
 * violation. */
static bool stale_phase;
static unsigned violations, quorate_calls, synced_calls;

static void
on_quorum (void *ud, bool q)
{
  if (q)
    quorate_calls++;
  if (q && stale_phase && cluster_synced ())
    violations++;
}

static void
on_synced (void *ud)
{
  synced_calls++;
  if (cluster_quorate () && stale_phase)
    violations++; /* must be the quorate side's table */
}

static const struct cluster_callbacks cb = {
  .on_quorum = on_quorum,
  .on_synced = on_synced,
};

static const uint32_t both[] = { 1, 2 }, three[] = { 1, 2, 3 },
                      me_only[] = { 1 }, two[] = { 2 }, others[] = { 2, 3 };

/* Node 1 and node 2 (with node 3 in corosync) quorate in ring 4, node 1
 * alone in the group first; then node 1 is cut off (ring 8, not quorate)
 * for longer than its lease. */
static void
setup_cut_off (void)
{
  ck_assert_int_eq (pipe (fds), 0);
  loop = qb_loop_create ();
  cluster_set_lease (LEASE_MS);
  ck_assert_int_eq (cluster_start (loop, "t", &cb, NULL), 0);
  totem (4, three, 3);
  confchg (me_only, 1, NULL, 0, me_only, 1); /* first: empty table */
  ck_assert (cluster_synced ());
  votequorum (true, 4, three, 3);
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (cluster_quorate ());
  confchg (both, 2, NULL, 0, two, 1); /* node 2's agent joins */
  deliver_mine ();

  /* The cut: no heartbeat is delivered while corosync forms the new
   * ring (longer than the lease); then the ring without the others,
   * votequorum's "not quorate", and the held heartbeats come in the new
   * ring, which renews nothing. */
  run_ms (LEASE_MS + 50);
  ck_assert (!cluster_quorate ());
  totem (8, me_only, 1);
  confchg (me_only, 1, two, 1, NULL, 0);
  votequorum (false, 8, me_only, 1);
  deliver_mine ();
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (!cluster_quorate ());
  stale_phase = true;
  violations = quorate_calls = synced_calls = 0;
}

static void
teardown (void)
{
  cluster_set_local (NULL);
  cluster_stop ();
  drop_mine ();
  qb_loop_destroy (loop);
  close (fds[0]);
  close (fds[1]);
  stale_phase = false;
  me_id = 1;
  while (inbox.head < inbox.n)
    free (inbox.buf[inbox.head++]);
  if (cpg_fds[0] >= 0)
    close (cpg_fds[0]), close (cpg_fds[1]);
  cpg_fds[0] = cpg_fds[1] = -1;
  inbox.head = inbox.n = 0;
}

/* Node 2 sends its table, one volume (name on cow, owned by owner at
 * epoch), after its mark. */
static void
table_from (const char *name, const char *cow, uint32_t owner, uint64_t epoch)
{
  struct cl_msg mark = { .type = CL_MSG_SYNC_MARK };
  deliver_from (2, &mark);
  struct cluster_vol v = { .state = owner ? CL_OWNED : CL_UNOWNED,
                           .owner = owner,
                           .epoch = epoch,
                           .generation = owner ? 9 : 0 };
  snprintf (v.def.name, sizeof v.def.name, "%s", name);
  snprintf (v.def.base, sizeof v.def.base, "/b");
  snprintf (v.def.cow, sizeof v.def.cow, "%s", cow);
  v.def.chunk_size = 65536;
  struct cl_msg piece = { .type = CL_MSG_SYNC_PIECE,
                          .vols = &v,
                          .nvols = 1,
                          .piece = 0,
                          .total = 1,
                          .last = true };
  deliver_from (2, &piece);
  run_ms (50); /* the transfer's steps */
}

/* The quorate side sends its table: node 2 owns v, epoch 5. */
static void
table_from_node2 (void)
{
  table_from ("v", "/c", 2, 5);
}

static void
heal_and_check (void)
{
  /* Heartbeats in the merged ring renew the lease, but the table is the
   * old one until node 2's arrives. */
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (!cluster_synced ());
  ck_assert_uint_eq (violations, 0);
  stale_phase = false;
  table_from_node2 ();
  ck_assert (cluster_synced ());
  ck_assert_uint_eq (synced_calls, 1);
  const struct cluster_vol *v = cluster_lookup ("v");
  ck_assert_ptr_nonnull (v);
  ck_assert_uint_eq (v->owner, 2);
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (cluster_quorate ());
}

START_TEST (test_quorum_before_merge)
{
  setup_cut_off ();
  /* The heal, votequorum first: ring 12 is quorate, but CPG has not
   * delivered ring 12 nor the merge.  Heartbeats still come in ring 8. */
  votequorum (true, 12, three, 3);
  ck_assert (!cluster_quorate ());
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert_msg (!cluster_quorate (), "quorate on the stale table before "
                                      "CPG delivered the merge");
  ck_assert_uint_eq (violations, 0);
  /* Now CPG: ring 12 and node 2 (with node 3's corosync) back. */
  totem (12, three, 3);
  confchg (both, 2, NULL, 0, two, 1);
  heal_and_check ();
}
END_TEST

START_TEST (test_merge_before_quorum)
{
  setup_cut_off ();
  /* The heal, CPG first: ring 12 and the merge; votequorum still says
   * ring 8 is not quorate.  Heartbeats in ring 12 renew nothing. */
  totem (12, three, 3);
  confchg (both, 2, NULL, 0, two, 1);
  ck_assert (!cluster_synced ()); /* a joiner again */
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (!cluster_quorate ());
  votequorum (true, 12, three, 3);
  heal_and_check ();
}
END_TEST

/* The quorate side's table can come before votequorum's word too: then
 * the node is synced first and quorate later, never on the old table. */
START_TEST (test_table_before_quorum)
{
  setup_cut_off ();
  totem (12, three, 3);
  confchg (both, 2, NULL, 0, two, 1);
  stale_phase = false;
  table_from_node2 ();
  ck_assert (cluster_synced ());
  ck_assert (!cluster_quorate ());
  ck_assert_uint_eq (cluster_lookup ("v")->owner, 2);
  votequorum (true, 12, three, 3);
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (cluster_quorate ());
  ck_assert_uint_eq (violations, 0);
}
END_TEST

/* Node 1 stays in the quorate side (node 3 is cut off): its table stays
 * current and it is quorate again once its heartbeats come through. */
START_TEST (test_majority_side_resumes)
{
  ck_assert_int_eq (pipe (fds), 0);
  loop = qb_loop_create ();
  cluster_set_lease (LEASE_MS);
  ck_assert_int_eq (cluster_start (loop, "t", &cb, NULL), 0);
  totem (4, three, 3);
  confchg (me_only, 1, NULL, 0, me_only, 1);
  votequorum (true, 4, three, 3);
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (cluster_quorate ());
  run_ms (LEASE_MS + 50); /* the ring forms anew */
  ck_assert (!cluster_quorate ());
  totem (8, both, 2);
  votequorum (true, 8, both, 2);
  deliver_mine (); /* held: too old to renew */
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert (cluster_quorate ());
  ck_assert (cluster_synced ());
  (void) others;
}
END_TEST

/* Node 3 (this one) alone and quorate with its own table (a volume
 * "mine"), as one side of a two_node partition; node 2's side comes back
 * with a table of its own. */
static void
setup_split (bool fenced_node2, const char *theirs)
{
  static const uint32_t three_only[] = { 3 }, two_three[] = { 2, 3 };
  me_id = 3;
  ck_assert_int_eq (pipe (fds), 0);
  loop = qb_loop_create ();
  cluster_set_lease (LEASE_MS);
  ck_assert_int_eq (cluster_start (loop, "t", &cb, NULL), 0);
  totem (4, three_only, 1);
  confchg (three_only, 1, NULL, 0, three_only, 1);
  votequorum (true, 4, three_only, 1);
  struct cluster_voldef d = { .chunk_size = 65536 };
  snprintf (d.name, sizeof d.name, "mine");
  snprintf (d.base, sizeof d.base, "/b");
  snprintf (d.cow, sizeof d.cow, "/c3");
  ck_assert_int_eq (cluster_define (&d), 0);
  if (fenced_node2)
    ck_assert_int_eq (cluster_fenced (2), 0);
  run_ms (LEASE_MS / 2);
  deliver_mine ();
  ck_assert_ptr_nonnull (cluster_lookup ("mine"));
  synced_calls = 0;
  /* The heal: node 2 joins as far as node 3 can tell; node 3 offers its
   * table (its mark is sent, not yet delivered), and node 2's mark and
   * table come first. */
  totem (8, two_three, 2);
  confchg (two_three, 2, NULL, 0, two, 1);
  table_from (theirs, "/c2", 0, 0);
  deliver_mine (); /* node 3's own mark, after node 2's */
  run_ms (50);
}

/* Neither side fenced the other: node 2's side (the lower id) wins, node 3
 * takes its table (and cowd announces "mine" again on on_synced). */
START_TEST (test_split_merge_lower_side_wins)
{
  setup_split (false, "theirs");
  ck_assert (cluster_synced ());
  ck_assert_uint_eq (synced_calls, 1);
  ck_assert_ptr_nonnull (cluster_lookup ("theirs"));
  ck_assert_ptr_null (cluster_lookup ("mine"));
}
END_TEST

/* Node 3 fenced node 2 while it was away: its table counts, node 2's
 * mark and table are ignored. */
START_TEST (test_split_merge_fencer_keeps_its_table)
{
  setup_split (true, "theirs2"); /* a name of its own (CK_FORK=no) */
  ck_assert (cluster_synced ());
  ck_assert_uint_eq (synced_calls, 0);
  ck_assert_ptr_null (cluster_lookup ("theirs2"));
  ck_assert_ptr_nonnull (cluster_lookup ("mine"));
}
END_TEST

/* --- a table of states over definitions the joiner holds --- */

static struct cluster_voldef local_defs[2];
static size_t nlocal;

static bool
local_def (void *ud, const char *name, struct cluster_voldef *def)
{
  for (size_t i = 0; i < nlocal; i++)
    if (strcmp (local_defs[i].name, name) == 0)
      {
        *def = local_defs[i];
        return true;
      }
  return false;
}

static const struct cluster_callbacks cb_local = {
  .on_synced = on_synced,
  .local_def = local_def,
};

static struct cluster_voldef
mkdef (const char *name, const char *cow)
{
  struct cluster_voldef d = { .chunk_size = 65536, .commit = 1 };
  snprintf (d.name, sizeof d.name, "%s", name);
  snprintf (d.base, sizeof d.base, "/b");
  snprintf (d.cow, sizeof d.cow, "%s", cow);
  return d;
}

static struct cluster_digest
digest_of (const struct cluster_voldef *defs, size_t n)
{
  struct cluster_digest d = { 0 };
  for (size_t i = 0; i < n; i++)
    cluster_digest_add (&d, &defs[i]);
  return d;
}

/* How many messages of type this node has multicast and not delivered;
 * the last one decoded into *m (if m). */
static unsigned
sent_of (int type, struct cl_msg *m)
{
  unsigned n = 0;
  for (size_t i = 0; i < nsent; i++)
    if (cl_msg_peek_type (sent[i].buf, sent[i].len) == type)
      {
        n++;
        if (m)
          {
            cl_msg_free (m);
            ck_assert_int_eq (cl_msg_decode (sent[i].buf, sent[i].len, m), 0);
          }
      }
  return n;
}

/* CPG delivers the messages this node multicast so far, and keeps what
 * it multicasts meanwhile (the table after its mark) for sent_of. */
static void
deliver_mine_now (void)
{
  size_t n = nsent;
  for (size_t i = 0; i < n; i++)
    {
      model.cpg_deliver_fn (1, &group, ME, getpid (), sent[i].buf, sent[i].len);
      free (sent[i].buf);
    }
  memmove (sent, sent + n, (nsent - n) * sizeof *sent);
  nsent -= n;
}

/* Node 1 (this one) holds a and b and joins node 2's group. */
static void
setup_joiner (size_t held)
{
  ck_assert_int_eq (pipe (fds), 0);
  loop = qb_loop_create ();
  cluster_set_lease (0);
  local_defs[0] = mkdef ("a", "/ca");
  local_defs[1] = mkdef ("b", "/cb");
  nlocal = held;
  struct cluster_digest d = digest_of (local_defs, nlocal);
  cluster_set_local (&d);
  synced_calls = 0;
  ck_assert_int_eq (cluster_start (loop, "t", &cb_local, NULL), 0);
  struct cl_msg have = { 0 };
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_HAVE, &have), 1);
  ck_assert (cluster_digest_equal (&have.digest, &d));
  cl_msg_free (&have);
  drop_mine ();
  totem (4, both, 2);
  confchg (both, 2, NULL, 0, me_only, 1);
  ck_assert (!cluster_synced ());
}

/* Node 2's mark and its table of a (owned by node 2 at epoch 5) and b,
 * as states over the definitions whose digest is d. */
static void
states_from_node2 (const struct cluster_digest *d)
{
  struct cl_msg mark = { .type = CL_MSG_SYNC_MARK };
  deliver_from (2, &mark);
  struct cluster_vol v[2] = {
    { .state = CL_OWNED, .owner = 2, .epoch = 5, .generation = 9 },
    { .state = CL_UNOWNED },
  };
  snprintf (v[0].def.name, sizeof v[0].def.name, "a");
  snprintf (v[1].def.name, sizeof v[1].def.name, "b");
  for (uint32_t i = 0; i < 2; i++)
    {
      struct cl_msg piece = { .type = CL_MSG_SYNC_STATES,
                              .vols = &v[i],
                              .nvols = 1,
                              .piece = i,
                              .total = 2,
                              .last = i == 1,
                              .digest = *d };
      deliver_from (2, &piece);
    }
  run_ms (50);
}

/* A joiner that holds the group's definitions takes the states and its
 * own definitions: the whole table, and no SYNC_REQUEST. */
START_TEST (test_states_joiner)
{
  setup_joiner (2);
  struct cluster_digest d = digest_of (local_defs, 2);
  states_from_node2 (&d);
  ck_assert (cluster_synced ());
  ck_assert_uint_eq (synced_calls, 1);
  ck_assert (cluster_adopted_local ());
  ck_assert_uint_eq (cluster_table_size (), 2);
  const struct cluster_vol *a = cluster_lookup ("a");
  ck_assert_ptr_nonnull (a);
  ck_assert_str_eq (a->def.cow, "/ca");
  ck_assert_uint_eq (a->def.chunk_size, 65536);
  ck_assert_uint_eq (a->owner, 2);
  ck_assert_uint_eq (a->epoch, 5);
  ck_assert_uint_eq (a->generation, 9);
  ck_assert_str_eq (cluster_lookup ("b")->def.cow, "/cb");
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_REQUEST, NULL), 0);
}
END_TEST

/* A joiner that holds other definitions (here: only a) asks for the whole
 * table, and takes it. */
START_TEST (test_states_joiner_holds_others)
{
  setup_joiner (1);
  struct cluster_voldef theirs[2] = { mkdef ("a", "/ca"), mkdef ("b", "/cb") };
  struct cluster_digest d = digest_of (theirs, 2);
  states_from_node2 (&d);
  ck_assert (!cluster_synced ());
  ck_assert_ptr_null (cluster_lookup ("a"));
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_REQUEST, NULL), 1);
  drop_mine ();
  table_from ("a", "/ca", 2, 5);
  ck_assert (cluster_synced ());
  ck_assert (!cluster_adopted_local ());
  ck_assert_uint_eq (cluster_lookup ("a")->owner, 2);
}
END_TEST

/* The digest matches but a name is not the joiner's (a digest of other
 * definitions that it claims to hold): never a table with a definition it
 * made up. */
START_TEST (test_states_joiner_missing_name)
{
  setup_joiner (2);
  struct cluster_digest d = digest_of (local_defs, 2);
  snprintf (local_defs[1].name, sizeof local_defs[1].name, "c");
  states_from_node2 (&d);
  ck_assert (!cluster_synced ());
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_REQUEST, NULL), 1);
}
END_TEST

/* Node 1 (this one) is first in the group and defines a; node 2's agent
 * joins. */
static void
setup_sender (void)
{
  ck_assert_int_eq (pipe (fds), 0);
  loop = qb_loop_create ();
  cluster_set_lease (0);
  ck_assert_int_eq (cluster_start (loop, "t", &cb, NULL), 0);
  totem (4, both, 2);
  confchg (me_only, 1, NULL, 0, me_only, 1);
  struct cluster_voldef a = mkdef ("a", "/ca");
  ck_assert_int_eq (cluster_define (&a), 0);
  deliver_mine ();
  ck_assert_ptr_nonnull (cluster_lookup ("a"));
  confchg (both, 2, NULL, 0, two, 1);
  /* It waits for what node 2 holds before it sends the mark. */
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_MARK, NULL), 0);
}

/* The joiner's SYNC_HAVE is delivered: the mark goes, and at the mark the
 * table goes as states (the joiner holds a) or whole (it holds other). */
static void
sender_answers (const struct cluster_voldef *held, size_t n, int type)
{
  setup_sender ();
  struct cl_msg have
      = { .type = CL_MSG_SYNC_HAVE, .digest = digest_of (held, n) };
  deliver_from (2, &have);
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_MARK, NULL), 1);
  deliver_mine_now ();
  struct cl_msg piece = { 0 };
  ck_assert_uint_eq (sent_of (type, &piece), 1);
  ck_assert_uint_eq (sent_of (type == CL_MSG_SYNC_STATES ? CL_MSG_SYNC_PIECE
                                                         : CL_MSG_SYNC_STATES,
                              NULL),
                     0);
  ck_assert_uint_eq (piece.nvols, 1);
  ck_assert_str_eq (piece.vols[0].def.name, "a");
  if (type == CL_MSG_SYNC_STATES)
    ck_assert (cluster_digest_equal (&piece.digest, &have.digest));
  else
    ck_assert_str_eq (piece.vols[0].def.cow, "/ca");
  cl_msg_free (&piece);
}

START_TEST (test_states_sender)
{
  struct cluster_voldef a = mkdef ("a", "/ca");
  sender_answers (&a, 1, CL_MSG_SYNC_STATES);
}
END_TEST

START_TEST (test_states_sender_other_defs)
{
  struct cluster_voldef a = mkdef ("a", "/other");
  sender_answers (&a, 1, CL_MSG_SYNC_PIECE);
}
END_TEST

START_TEST (test_states_sender_empty_joiner)
{
  sender_answers (NULL, 0, CL_MSG_SYNC_PIECE);
}
END_TEST

/* A joiner that says nothing gets the whole table after the wait. */
START_TEST (test_states_sender_no_have)
{
  setup_sender ();
  run_ms (500);
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_MARK, NULL), 0);
  run_ms (600);
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_MARK, NULL), 1);
  deliver_mine_now ();
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_PIECE, NULL), 1);
}
END_TEST

/* A table of many pieces goes out a few pieces per turn of the loop (at
 * most SEND_SLICE_NS of multicasts each), in order: sent in one go, the
 * pieces of 100,000 volumes kept the sender's loop 230 ms. */
START_TEST (test_send_slices)
{
  enum
  {
    N = 3000
  };
  setup_sender ();
  static struct cluster_voldef defs[N];
  for (int i = 0; i < N; i++)
    {
      char name[16], cow[16];
      snprintf (name, sizeof name, "v%04d", i);
      snprintf (cow, sizeof cow, "/c%04d", i);
      defs[i] = mkdef (name, cow);
    }
  ck_assert_int_eq (cluster_define_many (defs, N), 0);
  deliver_mine ();
  ck_assert_uint_eq (cluster_table_size (), N + 1);
  struct cl_msg have = { .type = CL_MSG_SYNC_HAVE };
  deliver_from (2, &have);
  ck_assert_uint_eq (sent_of (CL_MSG_SYNC_MARK, NULL), 1);
  mcast_us = 1000;
  deliver_mine_now (); /* the mark: the table is encoded and queued */
  unsigned first = sent_of (CL_MSG_SYNC_PIECE, NULL);
  ck_assert_uint_ge (first, 1);
  ck_assert_uint_le (first, 3);
  run_ms (200);
  mcast_us = 0;
  unsigned all = sent_of (CL_MSG_SYNC_PIECE, NULL);
  ck_assert_uint_gt (all, first + 3);
  uint32_t next = 0, vols = 0;
  for (size_t i = 0; i < nsent; i++)
    {
      struct cl_msg m;
      ck_assert_int_eq (cl_msg_decode (sent[i].buf, sent[i].len, &m), 0);
      ck_assert_int_eq (m.type, CL_MSG_SYNC_PIECE);
      ck_assert_uint_eq (m.piece, next++);
      ck_assert (m.last == (next == all));
      vols += m.nvols;
      cl_msg_free (&m);
    }
  ck_assert_uint_eq (vols, N + 1);
}
END_TEST

/* A turn of CPG messages ends once the node's I/O is waiting: each turn
 * then delivers one message, and the loop serves the I/O between two;
 * with no I/O waiting, one turn delivers all that are there. */
static bool io_ready;

static unsigned yields;
static enum cluster_batch last_what;

/* Definitions applied in the turn under way, and the most in one. */
static unsigned turn_defs, turn_defs_max;

/* A turn ends when its time is up (cpg.c's CPG_DISPATCH_NS, 2 ms) before
 * it asks whether I/O waits: a turn that took that long (this process
 * preempted on a loaded machine, or slowed by a sanitizer) did not test
 * what dispatch_defines tests, which then runs again. */
#define TURN_BUDGET_NS 2000000ll
static struct timespec turn_start;
static bool turn_over_budget;

static void
count_turns (void *ud, enum cluster_batch what)
{
  struct timespec now;
  clock_gettime (CLOCK_MONOTONIC, &now);
  if (what == CLUSTER_BATCH_BEGIN)
    turns++, turn_msgs = turn_defs = 0, turn_start = now;
  else
    {
      turn_max = turn_msgs > turn_max ? turn_msgs : turn_max;
      turn_defs_max = turn_defs > turn_defs_max ? turn_defs : turn_defs_max;
      if ((now.tv_sec - turn_start.tv_sec) * 1000000000ll
              + (now.tv_nsec - turn_start.tv_nsec)
          >= TURN_BUDGET_NS)
        turn_over_budget = true;
    }
  yields += what == CLUSTER_BATCH_YIELD;
  last_what = what;
}

static bool
io_ready_fn (void *ud)
{
  return io_ready;
}

static const struct cluster_callbacks cb_io = {
  .on_batch = count_turns,
  .io_waiting = io_ready_fn,
};

/* A node alone in its group, synced, with CPG's descriptor of its own. */
static void
start_alone (const struct cluster_callbacks *c)
{
  ck_assert_int_eq (pipe (fds), 0);
  ck_assert_int_eq (pipe (cpg_fds), 0);
  loop = qb_loop_create ();
  cluster_set_lease (0);
  ck_assert_int_eq (cluster_start (loop, "t", c, NULL), 0);
  totem (4, me_only, 1);
  confchg (me_only, 1, NULL, 0, me_only, 1);
  ck_assert (cluster_synced ());
  drop_mine ();
}

static void
dispatch_defines_once (unsigned n, bool io)
{
  start_alone (&cb_io);
  for (unsigned i = 0; i < n; i++)
    {
      char name[16], cow[16];
      snprintf (name, sizeof name, "v%u", i);
      snprintf (cow, sizeof cow, "/c%u", i);
      struct cluster_voldef d = mkdef (name, cow);
      ck_assert_int_eq (cluster_define (&d), 0);
    }
  /* Corosync has them all: the descriptor is readable. */
  ck_assert_uint_eq (nsent, n);
  for (size_t i = 0; i < nsent; i++)
    inbox.buf[i] = sent[i].buf, inbox.len[i] = sent[i].len;
  inbox.head = 0;
  inbox.n = nsent;
  nsent = 0;
  io_ready = io;
  turns = turn_max = yields = 0;
  turn_over_budget = false;
  ck_assert_int_eq (write (cpg_fds[1], "x", 1), 1);
  run_ms (50);
  ck_assert_uint_eq (inbox.head, n);
  ck_assert_uint_eq (cluster_table_size (), n);
}

/* n definitions delivered in turns, again (up to 5 times) while a turn
 * ran out of its time (TURN_BUDGET_NS): under ASan on a busy machine one
 * of 10 turns did, and ended for time, not for the I/O. */
static void
dispatch_defines (unsigned n, bool io)
{
  dispatch_defines_once (n, io);
  for (int again = 0; again < 4 && turn_over_budget; again++)
    {
      teardown ();
      dispatch_defines_once (n, io);
    }
}

START_TEST (test_dispatch_yields_to_io)
{
  dispatch_defines (10, true);
  ck_assert_uint_eq (turn_max, 1);
  ck_assert_uint_ge (turns, 10);
  /* Each ended for the I/O; the turn after the last found no more and
   * ended the batch. */
  ck_assert_uint_eq (yields, 10);
  ck_assert_int_eq (last_what, CLUSTER_BATCH_END);
}
END_TEST

START_TEST (test_dispatch_whole_turn)
{
  dispatch_defines (10, false);
  ck_assert_uint_eq (turn_max, 10);
  ck_assert_uint_eq (yields, 0);
}
END_TEST

/* A DEFINE_MANY (a creating host's turn of definitions) is applied a few
 * definitions a turn while the node's I/O waits, and no message after it
 * is applied before its last definition: a create --from's 32 in one
 * stretch kept a receiving host's reads waiting. */
#define MANY_N 40
static char many_log[MANY_N + 4][CLUSTER_NAME_MAX + 1];
static unsigned many_logged;

static void
many_on_define (void *ud, const struct cluster_voldef *def, bool defined)
{
  ck_assert_uint_lt (many_logged, MANY_N + 4);
  snprintf (many_log[many_logged++], sizeof many_log[0], "%c%s",
            defined ? '+' : '-', def->name);
  turn_defs++;
}

static const struct cluster_callbacks cb_many = {
  .on_define = many_on_define,
  .on_batch = count_turns,
  .io_waiting = io_ready_fn,
};

static void
inbox_put (const struct cl_msg *m)
{
  ck_assert_uint_lt (inbox.n, 64);
  void *buf = cl_msg_encode (m, &inbox.len[inbox.n]);
  ck_assert_ptr_nonnull (buf);
  inbox.buf[inbox.n++] = buf;
}

static void
dispatch_many (bool io)
{
  start_alone (&cb_many);
  static struct cluster_vol vols[MANY_N];
  for (unsigned i = 0; i < MANY_N; i++)
    {
      char name[16], cow[16];
      snprintf (name, sizeof name, "v%u", i);
      snprintf (cow, sizeof cow, "/c%u", i);
      memset (&vols[i], 0, sizeof vols[i]);
      vols[i].def = mkdef (name, cow);
    }
  /* The DEFINE_MANY, then the removal of its last volume and a DEFINE. */
  inbox_put (&(struct cl_msg){ .type = CL_MSG_DEFINE_MANY,
                               .vols = vols,
                               .nvols = MANY_N,
                               .total = MANY_N,
                               .last = true });
  struct cl_msg undef = { .type = CL_MSG_UNDEFINE };
  snprintf (undef.def.name, sizeof undef.def.name, "v%u", MANY_N - 1);
  inbox_put (&undef);
  struct cl_msg def = { .type = CL_MSG_DEFINE, .def = mkdef ("w", "/cw") };
  inbox_put (&def);
  io_ready = io;
  many_logged = turns = turn_defs_max = yields = 0;
  ck_assert_int_eq (write (cpg_fds[1], "x", 1), 1);
  run_ms (50);
  ck_assert_uint_eq (inbox.head, 3);
  ck_assert_uint_eq (cluster_table_size (), MANY_N);
  ck_assert_ptr_null (cluster_lookup ("v39"));
  ck_assert_ptr_nonnull (cluster_lookup ("w"));
  /* The group's order: v0..v39, then -v39, then w. */
  ck_assert_uint_eq (many_logged, MANY_N + 2);
  for (unsigned i = 0; i < MANY_N; i++)
    {
      char want[16];
      snprintf (want, sizeof want, "+v%u", i);
      ck_assert_str_eq (many_log[i], want);
    }
  ck_assert_str_eq (many_log[MANY_N], "-v39");
  ck_assert_str_eq (many_log[MANY_N + 1], "+w");
}

START_TEST (test_dispatch_many_in_steps)
{
  dispatch_many (true);
  /* One definition a turn while I/O waits. */
  ck_assert_uint_eq (turn_defs_max, 1);
  ck_assert_uint_ge (turns, MANY_N);
}
END_TEST

START_TEST (test_dispatch_many_whole_turn)
{
  dispatch_many (false);
  /* Turns end only for their time (CPG_DISPATCH_NS; a sanitizer's build
   * is slow enough to need two), never for I/O. */
  ck_assert_uint_gt (turn_defs_max, 1);
  ck_assert_uint_eq (yields, 0);
}
END_TEST

static Suite *
cpg_suite (void)
{
  Suite *s = suite_create ("cpg");
  TCase *tc = tcase_create ("ordering");
  tcase_add_checked_fixture (tc, NULL, teardown);
  tcase_add_test (tc, test_quorum_before_merge);
  tcase_add_test (tc, test_merge_before_quorum);
  tcase_add_test (tc, test_table_before_quorum);
  tcase_add_test (tc, test_majority_side_resumes);
  tcase_add_test (tc, test_split_merge_lower_side_wins);
  tcase_add_test (tc, test_split_merge_fencer_keeps_its_table);
  tcase_add_test (tc, test_states_joiner);
  tcase_add_test (tc, test_states_joiner_holds_others);
  tcase_add_test (tc, test_states_joiner_missing_name);
  tcase_add_test (tc, test_states_sender);
  tcase_add_test (tc, test_states_sender_other_defs);
  tcase_add_test (tc, test_states_sender_empty_joiner);
  tcase_add_test (tc, test_states_sender_no_have);
  tcase_add_test (tc, test_send_slices);
  tcase_add_test (tc, test_dispatch_yields_to_io);
  tcase_add_test (tc, test_dispatch_whole_turn);
  tcase_add_test (tc, test_dispatch_many_in_steps);
  tcase_add_test (tc, test_dispatch_many_whole_turn);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (cpg_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
