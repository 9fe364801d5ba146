/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cpg.c: the CPG group and votequorum on cowd's main loop, and the public
 * API of cluster.h.
 *
 * Sending: every message goes through an ordered queue.  cpg_mcast_joined
 * answering CS_ERR_TRY_AGAIN (corosync's flow control) leaves the queue as
 * it is and retries from a qb_loop timer, 1 ms doubling to 4 ms: never a
 * busy loop, never a lost or reordered message.  One turn of the loop
 * sends for at most SEND_SLICE_NS (each multicast is a round trip to
 * corosync); the rest goes from the next turn, so that the pieces of a
 * state transfer do not keep the sender from its NBD clients.
 *
 * Receiving: CPG delivers messages and configuration changes in one agreed
 * order.  Each is applied to the table (table.c).  The sender is the node
 * CPG names, never a field of the message.
 *
 * State transfer: on a configuration change with joiners, the lowest node
 * that was already a member multicasts SYNC_MARK; when SYNC_MARK is
 * delivered, that node encodes the table as it stands at that point into
 * SYNC_PIECEs of at most CL_PIECE_MAX bytes (a few hundred volumes each)
 * and multicasts them.  A joiner applies nothing until it has seen
 * SYNC_MARK; it queues what follows the mark (messages, and members that
 * leave), collects the pieces of the mark's sender in order into a table
 * of its own, and after the last one adopts it: it defines the volumes
 * through on_define in batches of at most SYNC_BUDGET_NS from loop jobs
 * (between on_batch begin/end: one store transaction each), so a table of
 * 100,000 volumes never blocks the loop long; then it replays the queue
 * and is synced (on_synced).  A joiner that holds definitions already
 * (an agent restarted) says so right after joining: SYNC_HAVE, a digest
 * of them (cluster_set_local).  The mark of a join waits for those (at
 * most HAVE_WAIT_MS), and when every joiner that spoke holds the table's
 * definitions the table goes as SYNC_STATES: names and states, the
 * definitions taken from the joiner's own (local_def), their digest
 * checked against the table's.  A joiner that cannot use them asks for
 * the whole table (SYNC_REQUEST).  A node alone in a new group (the first
 * one, or the whole cluster restarting) starts from an empty table and
 * cowd defines its volumes again from its own state directory.
 *
 * Membership: a member whose node went down (CPG_REASON_NODEDOWN) has
 * its volumes put in `fencing`; a member whose agent alone stopped
 * (PROCDOWN, LEAVE) keeps what it owns, so an agent restart or upgrade
 * disturbs nobody.
 *
 * Lease: every quorum-loss-timeout-ms / 4 this node multicasts a NOP and
 * notes when.  Its own NOP coming back in agreed order proves the group
 * still had it as a member when it was sent, so the lease runs to that
 * send time plus the timeout -- but only when the NOP was delivered in a
 * ring that is quorate now: the ring CPG delivered it in (the last totem
 * configuration) must be the very ring votequorum last called quorate.
 * A node cut off from the others forms a one-node ring of its own and
 * goes on delivering its NOPs there, while votequorum's "quorate" of the
 * old ring may still be the last word it has; such a NOP renews nothing.
 * A lease that runs out (corosync hung or gone, the ring stalled or cut,
 * or this agent stopped) counts as quorum lost: writes are held within the
 * timeout, before the quorate side, which needs the longer token +
 * consensus to notice, may fence this node, and cluster_lease_deadline_ns
 * tells the engine when to stop acknowledging what is in flight.  Only a
 * NOP sent after the lease ran out and delivered in a quorate ring gives it
 * back: by then every message the group ordered before it has been applied,
 * so the table says whether this node still owns what it served.  A NOP
 * whose renewal would end in the past renews nothing (the loop was stopped
 * longer than the lease).  The NOPs of others are ignored, as every unknown
 * type is.  At start the lease is set against corosync's own token +
 * consensus: a lease that is not shorter lets a cut-off owner acknowledge
 * writes after the others have formed a membership without it, and cowd
 * warns.
 *
 * Losing corosync: when a dispatch fails (corosync stopped, restarted or
 * dropped this client) the node holds writes (quorum and lease lost),
 * closes both handles, forgets what it had queued to send, and tries to
 * connect and join again every CLUSTER_RECONNECT_MS from the loop, never
 * blocking it.  Back in the group it is a joiner with a stale table: the
 * quorate side's table replaces it (or, alone, it is the first member),
 * on_synced lets cowd reconcile, and quorum returns with its first NOP
 * delivered in a quorate ring.  No operator action, no agent restart.
 * libqb (2.0) leaves in /dev/shm the directory and rings of each IPC
 * connection whose server died first (qb-SERVER-CLIENT-FD-RANDOM, 3 MiB
 * each, two per corosync crash): back in the group, the node removes its
 * own whose corosync is gone, so a corosync restart leaves nothing behind
 * (found by tests/soak).
 *
 * Partitions: a node that loses quorum marks its table stale (so does an
 * agent that finds itself fenced).  At the next merge a stale node acts as
 * a joiner: it sends no mark and takes the table of the quorate side,
 * which may have fenced it and given its volumes away meanwhile; if every
 * side was stale, the lowest member sends its own table after a wait
 * (stale_timeout).  If two sides kept quorum (two_node, where neither had
 * to fence the other: nothing was owned across), each sends its table to
 * the other, whose nodes joined as far as it can tell; a synced node that
 * gets a mark from a node of that join knows the other side was synced
 * too, and the side whose sender has the lower id wins: the other side
 * takes its table like a joiner (split_merge_from), then announces the
 * definitions made on its side meanwhile again (cowd's on_synced does
 * for every definition of its store the table lacks).  Never a side that
 * fenced a node of the other side meanwhile: its table holds the fence
 * and the new owners, and the fenced side finds out from the storage and
 * asks for that table (cluster_resync).  The lowest old member at a join may be
 * unable to send (stale, or a joiner of an earlier join that never got a
 * table): the other synced members watch for the mark and send it themselves,
 * one after the other (mark_watch; found by tests/soak, where joiners waited
 * for ever).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <corosync/cmap.h>
#include <corosync/corotypes.h>
#include <corosync/cpg.h>
#include <corosync/quorum.h>
#include "cowlog.h"

#include "cluster-int.h"
#include "clock.h"

/* After the connection to corosync is lost, how often to try again. */
#define CLUSTER_RECONNECT_MS 1000u

struct pending
{
  struct pending *next;
  void *buf;
  size_t len;
  bool nop;        /* a heartbeat: may pass queued messages */
  uint32_t sender; /* replay: who sent it, or who left */
  int left;        /* replay: 0 a message, 1 an agent left,
                    * 2 a node went down */
};

static struct
{
  qb_loop_t *loop; /* handed over by cluster_start */
  bool running;
  bool lost; /* the connection to corosync is gone */
  cpg_handle_t cpg;
  quorum_handle_t quorum;
  int cpg_fd, quorum_fd; /* polled while connected */
  qb_loop_timer_handle reconnect_timer;
  unsigned reconnects; /* attempts since the connection was lost */
  char group[CLUSTER_NAME_MAX + 16];
  uint32_t nodeid;
  bool quorate;      /* as votequorum says */
  bool held_quorate; /* as last told to on_quorum */
  /* Lease (see the top) */
  unsigned lease_ms; /* 0: none */
  uint64_t lease_until_ns;
  bool lease_lost;
  uint64_t standing_breaks; /* quorum or lease lost, majority left */
  bool ring_warned;         /* said once that a NOP renewed nothing */
  uint64_t hb_sent[8];      /* send times of own NOPs in flight */
  unsigned hb_n;
  qb_loop_timer_handle hb_timer, lease_timer;
  uint64_t ring_id;     /* the ring CPG delivers in now */
  uint64_t quorum_ring; /* the ring votequorum last spoke of */
  uint32_t members[CLUSTER_MAX_MEMBERS];
  size_t nmembers;
  uint32_t ring[CLUSTER_MAX_MEMBERS]; /* the totem ring's nodes */
  size_t nring;
  struct cl_table table;
  const struct cluster_callbacks *cb;
  void *ud;
  /* State transfer */
  bool synced;
  bool stale; /* lost quorum since the last sync */
  qb_loop_timer_handle stale_timer;
  uint64_t marks;      /* SYNC_MARKs delivered so far */
  uint64_t watch_base; /* marks at the last join (mark_watch) */
  qb_loop_timer_handle watch_timer;
  bool seen_mark;           /* joiner: the mark has been delivered */
  uint32_t sync_from;       /* joiner: who sent that mark */
  struct cl_table incoming; /* joiner: the pieces so far */
  uint32_t next_piece;
  struct pending *pieces_head, *pieces_tail; /* joiner: not decoded yet */
  bool last_queued;          /* joiner: the last piece is among them */
  bool job_armed;            /* sync_step is queued on the loop */
  bool send_armed;           /* send_flush is queued on the loop */
  int sync_fd;               /* eventfd that runs sync_step, or -1 */
  uint64_t sync_max_step_ns; /* the CPU of the longest sync_step */
  qb_loop_timer_handle sync_timer;
  bool adopting; /* joiner: defining the table in batches */
  size_t adopt_pos;
  /* This node's definitions (cluster_set_local), and whether the table
   * under way or last adopted came as states over them. */
  struct cluster_digest local;
  bool has_local;
  bool states;        /* joiner: the transfer under way is SYNC_STATES */
  bool adopted_local; /* the last table adopted was */
  /* The SYNC_HAVEs delivered since the last mark: what the nodes that
   * joined hold (the next mark's sender sends states only if they all
   * hold the table's definitions). */
  struct
  {
    uint32_t node;
    struct cluster_digest d;
  } haves[CLUSTER_MAX_MEMBERS];
  size_t nhaves;
  /* The joiners whose SYNC_HAVE this node waits for before it sends the
   * mark of their join (have_wait). */
  uint32_t await[CLUSTER_MAX_MEMBERS];
  size_t nawait;
  qb_loop_timer_handle await_timer;
  /* The last join seen while synced (split_merge_from): who joined, and
   * the lowest member that was here before it. */
  uint32_t joined[CLUSTER_MAX_MEMBERS];
  size_t njoined;
  uint32_t side_lowest;
  /* Nodes this side fenced (or confirmed fenced) while they were away: at
   * their return this side's table is the one that counts. */
  uint32_t fenced_away[CLUSTER_MAX_MEMBERS];
  size_t nfenced_away;
  struct pending *replay_head, *replay_tail;
  /* A DEFINE_MANY delivered and not yet applied whole (many_apply): no
   * other message is dispatched before its last definition. */
  struct cl_msg many;
  uint32_t many_from, many_next;
  bool many_on, many_armed;
  qb_loop_timer_handle many_timer;
  bool dispatching;                      /* in cpg_dispatch_fd's cpg_dispatch */
  uint32_t refused[CLUSTER_MAX_MEMBERS]; /* nodes of another version */
  size_t nrefused;
  /* Send queue */
  struct pending *out_head, *out_tail;
  unsigned backoff_ms;
  bool retry_armed;
  qb_loop_timer_handle retry_timer;
} C;

static struct cl_effects
fx (void)
{
  return (struct cl_effects){ C.cb, C.ud, C.nodeid };
}

static uint64_t
wall_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* --- sending --- */

static void send_flush (void);

/* corosync's flow control clears as the ring delivers: a state transfer
 * of hundreds of pieces waits on it many times, so the retry stays short
 * (never a busy loop: at least 1 ms). */
#define SEND_BACKOFF_MAX_MS 4

static void
send_retry (void *data)
{
  C.retry_armed = false;
  send_flush ();
}

/* One turn of the loop sends for at most this long: cpg_mcast_joined is
 * a round trip to corosync (about 0.3 ms), and the 782 pieces of a table
 * of 100,000 volumes sent in one go kept the sender's loop for 230 ms. */
#define SEND_SLICE_NS (2 * 1000000ull)

static void send_kick (void);

/* Send what is queued for at most budget_ns (UINT64_MAX: all of it). */
static void
send_flush_for (uint64_t budget_ns)
{
  uint64_t start = clock_now_ns ();
  while (C.out_head)
    {
      if (clock_now_ns () - start >= budget_ns)
        return send_kick (); /* the rest after the loop polled */
      struct pending *p = C.out_head;
      struct iovec iov = { p->buf, p->len };
      cs_error_t e = cpg_mcast_joined (C.cpg, CPG_TYPE_AGREED, &iov, 1);
      if (e == CS_ERR_TRY_AGAIN)
        {
          if (!C.retry_armed)
            {
              C.retry_armed = true;
              qb_loop_timer_add (C.loop, QB_LOOP_HIGH,
                                 (uint64_t) C.backoff_ms * 1000000ull, NULL,
                                 send_retry, &C.retry_timer);
              C.backoff_ms = C.backoff_ms >= SEND_BACKOFF_MAX_MS
                                 ? SEND_BACKOFF_MAX_MS
                                 : C.backoff_ms * 2;
            }
          return;
        }
      if (e != CS_OK)
        qb_log (LOG_ERR,
                "cluster: sending a message to group %s failed "
                "(corosync error %d); dropping it",
                C.group, e);
      C.backoff_ms = 1;
      C.out_head = p->next;
      if (!C.out_head)
        C.out_tail = NULL;
      free (p->buf);
      free (p);
    }
}

static void
send_flush (void)
{
  send_flush_for (SEND_SLICE_NS);
}

/* Flush now, unless the queue waits for corosync (the retry timer) or
 * for the next turn of the loop (send_kick). */
static void
send_flush_unless_waiting (void)
{
  if (!C.retry_armed && !C.send_armed)
    send_flush ();
}

/* A heartbeat goes before the messages waiting for corosync's flow
 * control (after the heartbeats already waiting, which stay in order): it
 * changes no table, and a state transfer of many pieces must not hold it
 * back past the lease. */
static void
send_enqueue (struct pending *p)
{
  struct pending **at = &C.out_head;
  if (p->nop)
    while (*at && (*at)->nop)
      at = &(*at)->next;
  else
    at = C.out_tail ? &C.out_tail->next : &C.out_head;
  p->next = *at;
  *at = p;
  if (!p->next)
    C.out_tail = p;
}

/* Queue m; sent now unless the queue waits for corosync or for the next
 * turn of the loop (flush false: the caller queues more, then flushes). */
static int
send_queue (struct cl_msg *m, bool flush)
{
  if (!C.running || C.lost)
    return -ENOTCONN;
  m->time_ms = wall_ms ();
  struct pending *p = calloc (1, sizeof *p);
  if (!p || !(p->buf = cl_msg_encode (m, &p->len)))
    {
      free (p);
      return -ENOMEM;
    }
  p->nop = m->type == CL_MSG_NOP;
  send_enqueue (p);
  if (flush)
    send_flush_unless_waiting ();
  return 0;
}

static int
send_msg (struct cl_msg *m)
{
  return send_queue (m, true);
}

static void
send_mark (void)
{
  struct cl_msg mark = { .type = CL_MSG_SYNC_MARK };
  send_msg (&mark);
}

/* --- receiving --- */

static void
replay_add (struct pending *p)
{
  if (C.replay_tail)
    C.replay_tail->next = p;
  else
    C.replay_head = p;
  C.replay_tail = p;
}

static struct pending *
pending_copy (const void *buf, size_t len, uint32_t sender)
{
  struct pending *p = calloc (1, sizeof *p);
  if (!p || !(p->buf = malloc (len)))
    abort (); /* losing it would fork the table */
  memcpy (p->buf, buf, len);
  p->len = len;
  p->sender = sender;
  return p;
}

static void
replay_queue (const void *buf, size_t len, uint32_t sender)
{
  replay_add (pending_copy (buf, len, sender));
}

/* A member left after the mark: the table sent as of the mark does not
 * know it yet, so it is applied after the table, in its place. */
static void
replay_left (uint32_t node, bool down)
{
  struct pending *p = calloc (1, sizeof *p);
  if (!p)
    abort ();
  p->sender = node;
  p->left = down ? 2 : 1;
  replay_add (p);
}

/* Forget what was queued for a membership this node is no longer in. */
static void
pending_free (struct pending **head, struct pending **tail)
{
  while (*head)
    {
      struct pending *p = *head;
      *head = p->next;
      free (p->buf);
      free (p);
    }
  *tail = NULL;
}

static void deliver (uint32_t sender, const void *buf, size_t len);
static void sync_offer (const uint32_t *skip, size_t nskip,
                        const uint32_t *await, size_t nawait);
static void have_check (void);

static void
replay_run (void)
{
  struct cl_effects e = fx ();
  while (C.replay_head)
    {
      struct pending *p = C.replay_head;
      C.replay_head = p->next;
      if (p->left)
        cl_table_member_left (&C.table, p->sender, p->left == 2, &e);
      else
        deliver (p->sender, p->buf, p->len);
      free (p->buf);
      free (p);
    }
  C.replay_tail = NULL;
}

/* --- the state transfer --- */

/* A SYNC_HAVE delivered while synced: what node holds (the latest). */
/* Where node's SYNC_HAVE is in C.haves, or C.nhaves. */
static size_t
have_find (uint32_t node)
{
  size_t i = 0;
  while (i < C.nhaves && C.haves[i].node != node)
    i++;
  return i;
}

static void
have_record (uint32_t node, const struct cluster_digest *d)
{
  size_t i = have_find (node);
  if (i == CLUSTER_MAX_MEMBERS)
    return;
  C.haves[i].node = node;
  C.haves[i].d = *d;
  C.nhaves += i == C.nhaves;
  have_check ();
}

static void
have_drop (uint32_t node)
{
  size_t i = have_find (node);
  if (i < C.nhaves)
    C.haves[i] = C.haves[--C.nhaves];
}

/* States only: some node said what it holds since the last mark, and
 * every one that did holds the table's definitions.  A joiner that holds
 * others (or said nothing in time and holds others) asks for the whole
 * table again (SYNC_REQUEST): a second transfer, never a wrong table. */
static bool
sync_states_only (void)
{
  for (size_t i = 0; i < C.nhaves; i++)
    if (!cluster_digest_equal (&C.haves[i].d, &C.table.digest))
      return false;
  return C.nhaves > 0;
}

/* Our own mark came back: the table as it stands at this point of the
 * agreed order, in pieces under CL_PIECE_MAX (encoded now, so later
 * messages cannot change what the joiners receive). */
static void
sync_send_table (void)
{
  bool states = sync_states_only ();
  size_t n = C.table.n, i = 0;
  uint32_t piece = 0;
  do
    {
      size_t start = i;
      size_t bytes = states ? CL_STATES_OVERHEAD : CL_PIECE_OVERHEAD;
      for (; i < n; i++)
        {
          size_t b = states ? cl_msg_states_vol_size (&C.table.vols[i])
                            : cl_msg_piece_vol_size (&C.table.vols[i]);
          if (bytes + b > CL_PIECE_MAX
              || (states && i - start == CL_STATES_VOLS_MAX))
            break;
          bytes += b;
        }
      struct cl_msg d
          = { .type = states ? CL_MSG_SYNC_STATES : CL_MSG_SYNC_PIECE,
              .vols = C.table.vols + start,
              .nvols = (uint32_t) (i - start),
              .piece = piece++,
              .total = (uint32_t) n,
              .last = i == n,
              .digest = C.table.digest };
      send_queue (&d, false);
    }
  while (i < n);
  send_flush_unless_waiting ();
  qb_log (LOG_INFO, "cluster: sent the table (%zu volumes in %u pieces%s)", n,
          piece,
          states ? ", states only: the joiners hold its definitions" : "");
}

/* No transfer under way any more: wait for the next mark. */
static void
sync_reset (void)
{
  cl_table_clear (&C.incoming);
  C.next_piece = 0;
  C.seen_mark = false;
  C.last_queued = false;
  C.adopting = false;
  C.states = false;
  pending_free (&C.pieces_head, &C.pieces_tail);
}

/* Give up the transfer under way (its pieces made no sense): wait for
 * the next mark. */
static void
sync_abandon (const char *why, uint32_t sender)
{
  qb_log (LOG_ERR,
          "cluster: the table from node %u: %s; waiting for "
          "another state transfer",
          sender, why);
  sync_reset ();
  pending_free (&C.replay_head, &C.replay_tail);
}

/* The joiner's work runs from loop jobs of at most SYNC_BUDGET_NS each:
 * decoding the queued pieces into a table (a 60 KiB piece is a few
 * hundred volumes), then defining the adopted table's volumes (one
 * on_batch transaction per job), so that a table of 100,000 volumes never
 * keeps the loop (NBD, the lease's heartbeats) for long.  One dispatch
 * delivers up to CPG_DISPATCH_NS of messages, hundreds of pieces, so
 * deliver() only copies pieces into C.pieces; messages that are not pieces wait
 * in the replay queue, as before the table came. */
#define SYNC_BUDGET_NS (4 * 1000000ull)
/* A table this large is not reserved for up front (a bad count). */
#define SYNC_MAX_VOLUMES (16u << 20)

static void sync_step (void *data);

/* Should a slice of work end early for the node's I/O? */
static bool
io_waiting (void)
{
  return C.cb->io_waiting && C.cb->io_waiting (C.ud);
}

/* The next step runs once the loop has polled again: an eventfd made
 * readable now wakes it at once, and whatever else is ready (NBD
 * requests, CPG, the control channel) is served before the step runs.
 * (A qb_loop job or zero timer added from a step may run within the same
 * turn, and a timer of 1 ms waits for the clock on an idle loop.) */
static int
sync_wake (int fd, int revents, void *data)
{
  uint64_t n;
  if (read (fd, &n, sizeof n) < 0 && errno != EAGAIN)
    qb_log (LOG_ERR, "cluster: reading the sync eventfd failed: %m");
  if (C.send_armed)
    {
      C.send_armed = false;
      send_flush_unless_waiting ();
    }
  if (C.job_armed)
    sync_step (NULL);
  return 0;
}

/* The eventfd that wakes the transfer's steps, made at start: a node that
 * was first in the group adopts a table only after a corosync restart or
 * a partition, and an eventfd made then showed in the soak as a
 * descriptor that appears mid-run and stays.  0 or -errno. */
static int
sync_fd_open (void)
{
  if (C.sync_fd >= 0)
    return 0;
  int fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0)
    return -errno;
  if (qb_loop_poll_add (C.loop, QB_LOOP_LOW, fd, POLLIN, NULL, sync_wake) != 0)
    {
      close (fd);
      return -ENOMEM;
    }
  C.sync_fd = fd;
  return 0;
}

/* Wake the loop for what *armed stands for (a transfer step, the rest of
 * the send queue), once until sync_wake runs it. */
static void
loop_wake (bool *armed)
{
  if (*armed)
    return;
  *armed = true;
  if (sync_fd_open () < 0)
    abort (); /* the transfer could never end */
  uint64_t one = 1;
  if (write (C.sync_fd, &one, sizeof one) < 0)
    qb_log (LOG_ERR, "cluster: waking the loop for the transfer failed: %m");
}

static void
sync_kick (void)
{
  loop_wake (&C.job_armed);
}

/* The rest of the send queue from the next turn of the loop. */
static void
send_kick (void)
{
  loop_wake (&C.send_armed);
}

static void
sync_adopt_done (void)
{
  C.adopting = false;
  C.synced = true;
  C.stale = false;
  replay_run ();
  qb_log (LOG_INFO,
          "cluster: synced (%zu volumes; the longest step took "
          "%.1f ms of CPU)",
          C.table.n, (double) C.sync_max_step_ns / 1e6);
  if (C.cb->on_synced)
    C.cb->on_synced (C.ud);
}

/* Define the adopted table's volumes until `until`, in one batch. */
static void
sync_adopt_batch (uint64_t until)
{
  bool yield = false;
  if (C.cb->on_batch)
    C.cb->on_batch (C.ud, CLUSTER_BATCH_BEGIN);
  while (C.adopt_pos < C.table.n)
    {
      if (C.cb->on_define)
        C.cb->on_define (C.ud, &C.table.vols[C.adopt_pos].def, true);
      if ((++C.adopt_pos & 15) == 0 && C.adopt_pos < C.table.n
          && (clock_now_ns () >= until || (yield = io_waiting ())))
        break;
    }
  if (C.cb->on_batch)
    C.cb->on_batch (C.ud, yield ? CLUSTER_BATCH_YIELD : CLUSTER_BATCH_END);
  if (C.adopt_pos == C.table.n)
    sync_adopt_done ();
}

/* The states came for definitions this node does not hold (it changed
 * since it said what it holds, or another joiner's digest decided): ask
 * the group for the whole table. */
static void
sync_want_whole (const char *why, uint32_t sender)
{
  qb_log (LOG_INFO,
          "cluster: the table from node %u came as states only, but %s; "
          "asking for the whole table",
          sender, why);
  sync_reset ();
  pending_free (&C.replay_head, &C.replay_tail);
  struct cl_msg req = { .type = CL_MSG_SYNC_REQUEST };
  send_msg (&req);
}

/* A volume of a SYNC_STATES piece: its definition is this node's own. */
static bool
sync_local_def (struct cluster_vol *v)
{
  char name[CLUSTER_NAME_MAX];
  memcpy (name, v->def.name, sizeof name);
  return C.cb->local_def && C.cb->local_def (C.ud, name, &v->def)
         && strcmp (v->def.name, name) == 0;
}

static void
sync_take_piece (const struct cl_msg *m, uint32_t sender)
{
  bool states = m->type == CL_MSG_SYNC_STATES;
  if (m->piece != C.next_piece || (m->piece > 0 && states != C.states))
    return sync_abandon ("a piece came out of order", sender);
  if (m->piece == 0)
    {
      C.states = states;
      if (states
          && (!C.has_local || !cluster_digest_equal (&m->digest, &C.local)))
        return sync_want_whole ("this node holds other definitions", sender);
    }
  if (m->piece == 0 && m->total <= SYNC_MAX_VOLUMES
      && cl_table_reserve (&C.incoming, m->total) < 0)
    return sync_abandon ("out of memory for the table", sender);
  for (uint32_t i = 0; i < m->nvols; i++)
    {
      if (states && !sync_local_def (&m->vols[i]))
        return sync_want_whole ("this node does not hold a volume of it",
                                sender);
      if (!cl_table_add (&C.incoming, &m->vols[i]))
        return sync_abandon ("a volume came twice (or out of memory)", sender);
    }
  C.next_piece++;
  if (!m->last)
    return;
  if (C.incoming.n != m->total)
    return sync_abandon ("the pieces do not add up to the table", sender);
  if (states && !cluster_digest_equal (&C.incoming.digest, &m->digest))
    return sync_want_whole ("its definitions are not this node's", sender);
  C.adopted_local = states;
  qb_log (LOG_INFO,
          "cluster: received the table (%zu volumes in %u "
          "pieces%s)",
          C.incoming.n, C.next_piece,
          states ? ", states over this node's definitions" : "");
  cl_table_clear (&C.table);
  C.table = C.incoming;
  memset (&C.incoming, 0, sizeof C.incoming);
  C.next_piece = 0;
  C.last_queued = false;
  C.adopting = true;
  C.adopt_pos = 0;
}

/* Decode and take the next queued piece. */
static void
sync_next_piece (void)
{
  struct pending *p = C.pieces_head;
  struct cl_msg m;
  if (!(C.pieces_head = p->next))
    C.pieces_tail = NULL;
  int r = cl_msg_decode (p->buf, p->len, &m);
  if (r < 0)
    sync_abandon (r == -EBADMSG ? "a piece has a bad checksum"
                                : "a piece is malformed",
                  p->sender);
  else
    sync_take_piece (&m, p->sender);
  cl_msg_free (&m);
  free (p->buf);
  free (p);
}

/* A transfer's first piece is next: reserve the table for its total in
 * a step of its own (true), not in the step that decodes the piece.  At
 * 100,000 volumes the three indexes and the first MiB of the array are
 * 2-3 ms, and the step of the first piece was a restarted joiner's
 * longest, 8.2-9.1 ms of CPU (bench/scale-join).  A reserve that fails
 * is tried again with the piece, which then gives up the transfer. */
static bool
sync_reserve_first (void)
{
  uint32_t piece, total;
  const struct pending *p = C.pieces_head;
  if (cl_msg_peek_piece (p->buf, p->len, &piece, &total) < 0 || piece != 0
      || C.next_piece != 0 || total > SYNC_MAX_VOLUMES
      || C.incoming.cap >= total)
    return false;
  return cl_table_reserve (&C.incoming, total) == 0;
}

static void
sync_step (void *data)
{
  uint64_t start = clock_now_ns (), until = start + SYNC_BUDGET_NS;
  uint64_t cpu = clock_thread_cpu_ns ();
  unsigned pieces = 0;
  size_t defined = C.adopt_pos;
  C.job_armed = false;
  bool reserved = C.pieces_head && !C.adopting && sync_reserve_first ();
  while (!reserved && C.pieces_head && !C.adopting && clock_now_ns () < until
         && (pieces == 0 || !io_waiting ()))
    sync_next_piece (), pieces++;
  /* Adopting starts in a step of its own, not after the last piece's. */
  if (C.adopting && pieces == 0 && clock_now_ns () < until)
    sync_adopt_batch (until);
  cpu = clock_thread_cpu_ns () - cpu;
  C.sync_max_step_ns = cpu > C.sync_max_step_ns ? cpu : C.sync_max_step_ns;
  if (cpu > 2 * SYNC_BUDGET_NS)
    qb_log (LOG_NOTICE,
            "cluster: a step of the state transfer took %.1f ms "
            "of CPU in %.1f ms (%u pieces, %zu definitions)",
            (double) cpu / 1e6, (double) (clock_now_ns () - start) / 1e6,
            pieces,
            C.adopt_pos >= defined ? C.adopt_pos - defined : C.adopt_pos);
  if (C.pieces_head || C.adopting)
    sync_kick ();
}

/* deliver(), not synced yet, a piece of the transfer it follows: keep a
 * copy for sync_step.  The flags word says whether it is the last; the
 * checksum is checked when the piece is decoded. */
static void
sync_queue_piece (const uint8_t *buf, size_t len, uint32_t sender)
{
  struct pending *p = pending_copy (buf, len, sender);
  if (C.pieces_tail)
    C.pieces_tail->next = p;
  else
    C.pieces_head = p;
  C.pieces_tail = p;
  if (len >= CL_HDR_SIZE + 12 && (buf[CL_HDR_SIZE + 8] & 1))
    C.last_queued = true;
  sync_kick ();
}

/* Another version of the protocol: said once per node, then ignored. */
static void
refuse_version (uint32_t sender)
{
  for (size_t i = 0; i < C.nrefused; i++)
    if (C.refused[i] == sender)
      return;
  if (C.nrefused < CLUSTER_MAX_MEMBERS)
    C.refused[C.nrefused++] = sender;
  qb_log (LOG_ERR,
          "cluster: node %u speaks another version of the cowherd "
          "cluster protocol than this node (version %d); its messages are "
          "ignored: run one cowherd version on every node",
          sender, CL_MSG_VERSION);
}

static void lease_renew (uint64_t sent_ns);

static bool
listed (const uint32_t *nodes, size_t n, uint32_t node)
{
  for (size_t i = 0; i < n; i++)
    if (nodes[i] == node)
      return true;
  return false;
}

static void
node_drop (uint32_t *set, size_t *n, uint32_t node)
{
  for (size_t i = 0; i < *n; i++)
    if (set[i] == node)
      set[i--] = set[--*n];
}

/* A mark from a node of the last join, whose id is below every member
 * that was here before it: that side sent its table, so it was synced
 * too (a joiner or a stale node sends none), and it wins. */
static bool
split_merge_from (uint32_t sender)
{
  if (sender >= C.side_lowest || !listed (C.joined, C.njoined, sender))
    return false;
  for (size_t i = 0; i < C.njoined; i++)
    if (listed (C.fenced_away, C.nfenced_away, C.joined[i]))
      return false; /* we fenced that side: ours counts */
  return true;
}

static void
deliver (uint32_t sender, const void *buf, size_t len)
{
  struct cl_msg m;
  /* A piece is decoded only by a joiner that waits for it, and later. */
  int type = cl_msg_peek_type (buf, len);
  if (type == CL_MSG_SYNC_PIECE || type == CL_MSG_SYNC_STATES)
    {
      if (C.synced || !C.seen_mark)
        return;
      if (sender == C.sync_from && !C.last_queued && !C.adopting)
        sync_queue_piece (buf, len, sender);
      else
        replay_queue (buf, len, sender);
      return;
    }
  int r = cl_msg_decode (buf, len, &m);
  if (r == -EPROTONOSUPPORT)
    return refuse_version (sender);
  if (r < 0)
    {
      qb_log (LOG_WARNING,
              "cluster: ignoring a malformed message from node "
              "%u (%zu bytes)",
              sender, len);
      return;
    }
  if (m.type == CL_MSG_NOP)
    {
      if (sender == C.nodeid && C.hb_n > 0)
        {
          uint64_t sent = C.hb_sent[0];
          memmove (C.hb_sent, C.hb_sent + 1, --C.hb_n * sizeof *C.hb_sent);
          lease_renew (sent);
        }
      cl_msg_free (&m);
      return;
    }
  if (m.type == CL_MSG_SYNC_MARK)
    C.marks++;
  if (!C.synced)
    {
      if (m.type == CL_MSG_SYNC_MARK && !C.seen_mark)
        {
          C.seen_mark = true;
          C.sync_from = sender;
        }
      else if (C.seen_mark)
        replay_queue (buf, len, sender);
      cl_msg_free (&m);
      return;
    }
  if (m.type == CL_MSG_SYNC_MARK && sender == C.nodeid)
    sync_send_table ();
  else if (m.type == CL_MSG_SYNC_HAVE)
    {
      if (sender != C.nodeid)
        have_record (sender, &m.digest);
    }
  else if (m.type == CL_MSG_SYNC_MARK && split_merge_from (sender))
    {
      qb_log (LOG_WARNING,
              "cluster: both sides of the partition kept quorum and a "
              "table; node %u's side has the lower id: this node takes its "
              "table and defines again what was defined on this side only",
              sender);
      C.synced = false;
      sync_reset ();
      C.seen_mark = true;
      C.sync_from = sender;
    }
  else if (m.type == CL_MSG_SYNC_REQUEST)
    {
      /* What it said it holds did not serve: the whole table. */
      have_drop (sender);
      if (sender != C.nodeid && !C.stale)
        sync_offer (&sender, 1, NULL, 0);
    }
  else if (m.type == CL_MSG_DEFINE_MANY && C.dispatching)
    {
      /* Applied by cpg_dispatch_fd, in steps, before the next message
       * (one replayed after a join applies whole, in replay_run's turn). */
      C.many = m;
      C.many_from = sender;
      C.many_next = 0;
      C.many_on = true;
      return;
    }
  else if (m.type != CL_MSG_SYNC_MARK && m.type != CL_MSG_SYNC_PIECE
           && m.type != CL_MSG_SYNC_STATES)
    {
      struct cl_effects e = fx ();
      if ((m.type == CL_MSG_FENCED || m.type == CL_MSG_FENCE_CONFIRM)
          && !listed (C.members, C.nmembers, m.node)
          && !listed (C.fenced_away, C.nfenced_away, m.node)
          && C.nfenced_away < CLUSTER_MAX_MEMBERS)
        C.fenced_away[C.nfenced_away++] = m.node;
      cl_table_apply (&C.table, sender, &m, &e);
    }
  if (m.type == CL_MSG_SYNC_MARK)
    {
      C.nhaves = 0; /* this mark's transfer answered them */
      C.nawait = 0;
    }
  cl_msg_free (&m);
}

static void
cpg_deliver_fn (cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid,
                uint32_t pid, void *msg, size_t len)
{
  deliver (nodeid, msg, len);
}

/* A merge after this node lost quorum: its table may be behind what the
 * quorate side did meanwhile (fenced us, gave our volumes away), so it
 * takes that side's table like a joiner and sends no mark of its own.  If
 * every side lost quorum, nobody sends a mark: after STALE_WAIT_MS the
 * lowest member that is quorate again sends its own table. */
#define STALE_WAIT_MS 3000

static uint32_t
lowest_member (void)
{
  uint32_t lowest = UINT32_MAX;
  for (size_t i = 0; i < C.nmembers; i++)
    lowest = C.members[i] < lowest ? C.members[i] : lowest;
  return lowest;
}

static void
stale_timeout (void *data)
{
  if (C.synced || !cluster_quorate () || lowest_member () != C.nodeid)
    return;
  qb_log (LOG_WARNING, "cluster: no quorate side sent a table after the "
                       "merge; this node sends its own");
  C.synced = true;
  C.stale = false;
  C.adopted_local = false;
  send_mark ();
  /* Its own table is the group's now: act on it, as after adopting one. */
  if (C.cb->on_synced)
    C.cb->on_synced (C.ud);
}

static void
stale_merge (void)
{
  qb_log (LOG_NOTICE, "cluster: merging after losing quorum: taking the "
                      "table of the quorate side");
  C.synced = false;
  sync_reset ();
  qb_loop_timer_del (C.loop, C.stale_timer); /* one wait at a time */
  qb_loop_timer_add (C.loop, QB_LOOP_LOW, (uint64_t) STALE_WAIT_MS * 1000000ull,
                     NULL, stale_timeout, &C.stale_timer);
}

/* A join whose chosen sender sends no mark: the lowest old member may be
 * stale (it lost quorum, or its agent was fenced) or a joiner that never
 * got a table itself, and the joiners would wait for ever.  Every other
 * synced old member watches: the k-th lowest sends the mark after k *
 * MARK_WATCH_MS if none was delivered since the join.  A second mark is
 * harmless: a joiner takes the first one's table, the others ignore it. */
#define MARK_WATCH_MS 3000

static void
mark_watch_timeout (void *data)
{
  if (!C.synced || C.stale || C.lost || C.marks != C.watch_base)
    return;
  qb_log (LOG_WARNING,
          "cluster: no member sent the table to the nodes that "
          "joined (the lowest one that was there is stale or has no table "
          "itself); node %u sends it",
          C.nodeid);
  send_mark ();
}

static void
mark_watch (unsigned rank)
{
  qb_loop_timer_del (C.loop, C.watch_timer);
  C.watch_base = C.marks;
  qb_loop_timer_add (C.loop, QB_LOOP_LOW,
                     (uint64_t) rank * MARK_WATCH_MS * 1000000ull, NULL,
                     mark_watch_timeout, &C.watch_timer);
}

/* The mark of a join waits for what the joiners hold (SYNC_HAVE, which
 * each sends right after joining, and which CPG delivers after the join):
 * sent at once, the mark came before the restarted joiner's SYNC_HAVE
 * and it got the whole table.  Only agents that joined the group wait
 * (CPG_REASON_JOIN); the other side of a partition that heals (NODEUP)
 * has a table and says nothing.  A joiner that says nothing (a lost
 * message) delays its table by HAVE_WAIT_MS at most. */
#define HAVE_WAIT_MS 1000

static void
have_wait_send (void)
{
  C.nawait = 0;
  qb_loop_timer_del (C.loop, C.await_timer);
  if (!C.synced || C.stale)
    return; /* lost quorum meanwhile: its table is no one's to take */
  send_mark ();
}

static void
have_wait_timeout (void *data)
{
  if (!C.nawait)
    return;
  qb_log (LOG_INFO,
          "cluster: a node that joined did not say which volumes it "
          "holds within %u ms; sending the whole table",
          HAVE_WAIT_MS);
  have_wait_send ();
}

/* Every awaited joiner has said what it holds (or left): the mark now. */
static void
have_check (void)
{
  if (!C.nawait)
    return;
  for (size_t i = 0; i < C.nawait; i++)
    if (have_find (C.await[i]) == C.nhaves)
      return;
  have_wait_send ();
}

/* Nodes need the table (they joined, or asked: skip lists them): the
 * lowest other member sends the mark (once the agents that joined, await,
 * said what they hold); the others watch that one comes (mark_watch). */
static void
sync_offer (const uint32_t *skip, size_t nskip, const uint32_t *await,
            size_t nawait)
{
  unsigned rank = 0; /* old members below this node */
  for (size_t i = 0; i < C.nmembers; i++)
    {
      bool skipped = false;
      for (size_t j = 0; j < nskip; j++)
        skipped |= skip[j] == C.members[i];
      if (!skipped && C.members[i] < C.nodeid)
        rank++;
    }
  if (rank == 0 && nawait)
    {
      for (size_t i = 0; i < nawait && C.nawait < CLUSTER_MAX_MEMBERS; i++)
        if (!listed (C.await, C.nawait, await[i]))
          C.await[C.nawait++] = await[i];
      qb_loop_timer_del (C.loop, C.await_timer);
      qb_loop_timer_add (C.loop, QB_LOOP_LOW,
                         (uint64_t) HAVE_WAIT_MS * 1000000ull, NULL,
                         have_wait_timeout, &C.await_timer);
      have_check ();
    }
  else if (rank == 0)
    {
      send_mark ();
    }
  else
    mark_watch (rank);
}

static void cpg_confchg_apply (const struct cpg_address *members,
                               size_t nmembers, const struct cpg_address *left,
                               size_t nleft, const struct cpg_address *joined,
                               size_t njoined);

/* A configuration change: applied, then told to the daemon (fencing starts
 * from it, not from polling). */
static void
cpg_confchg_fn (cpg_handle_t h, const struct cpg_name *group,
                const struct cpg_address *members, size_t nmembers,
                const struct cpg_address *left, size_t nleft,
                const struct cpg_address *joined, size_t njoined)
{
  cpg_confchg_apply (members, nmembers, left, nleft, joined, njoined);
  if (C.cb->on_members)
    C.cb->on_members (C.ud);
}

static void
cpg_confchg_apply (const struct cpg_address *members, size_t nmembers,
                   const struct cpg_address *left, size_t nleft,
                   const struct cpg_address *joined, size_t njoined)
{
  C.nmembers = 0;
  for (size_t i = 0; i < nmembers && i < CLUSTER_MAX_MEMBERS; i++)
    C.members[C.nmembers++] = members[i].nodeid;
  /* The merge of the last join is settled (its marks came right after
   * it); a node that leaves again starts afresh. */
  for (size_t i = 0; i < C.njoined; i++)
    node_drop (C.fenced_away, &C.nfenced_away, C.joined[i]);
  for (size_t i = 0; i < nleft; i++)
    node_drop (C.fenced_away, &C.nfenced_away, left[i].nodeid);
  C.njoined = 0;
  struct cl_effects e = fx ();
  /* Nodes went away and those left here are no strict majority of the
   * view before: the other side may be quorate too (two_node, or a tie
   * broken its way) and may fence this node, though this node kept its
   * quorum and lease.  That breaks its standing (cluster_standing_breaks). */
  size_t gone = 0;
  for (size_t i = 0; i < nleft; i++)
    gone += left[i].reason == CPG_REASON_NODEDOWN;
  if (gone && 2 * nmembers <= nmembers + nleft)
    {
      C.standing_breaks++;
      qb_log (LOG_NOTICE,
              "cluster: %zu of %zu members are left after nodes "
              "went away, no majority: the others may be quorate and fence "
              "this node",
              nmembers, nmembers + nleft);
    }
  for (size_t i = 0; i < nleft; i++)
    {
      bool down = left[i].reason == CPG_REASON_NODEDOWN;
      qb_log (LOG_NOTICE, "cluster: node %u left the group (%s)",
              left[i].nodeid, down ? "node down" : "agent stopped");
      have_drop (left[i].nodeid);
      node_drop (C.await, &C.nawait, left[i].nodeid);
      have_check ();
      if (C.synced)
        cl_table_member_left (&C.table, left[i].nodeid, down, &e);
      else if (C.seen_mark)
        replay_left (left[i].nodeid, down);
    }
  bool me_joined = false;
  for (size_t i = 0; i < njoined; i++)
    me_joined |= joined[i].nodeid == C.nodeid;
  if (me_joined)
    {
      if (nmembers == njoined)
        {
          C.synced = true; /* first in the group: empty table */
          C.adopted_local = false;
          qb_log (LOG_INFO, "cluster: first member of group %s", C.group);
          if (C.cb->on_synced)
            C.cb->on_synced (C.ud);
        }
      return;
    }
  if (njoined == 0 || !C.synced)
    return;
  if (C.stale)
    {
      stale_merge ();
      return;
    }
  C.side_lowest = UINT32_MAX;
  for (size_t i = 0; i < C.nmembers; i++)
    {
      bool new = false;
      for (size_t j = 0; j < njoined; j++)
        new |= joined[j].nodeid == C.members[i];
      if (!new &&C.members[i] < C.side_lowest)
        C.side_lowest = C.members[i];
    }
  for (size_t j = 0; j < njoined && j < CLUSTER_MAX_MEMBERS; j++)
    C.joined[C.njoined++] = joined[j].nodeid;
  uint32_t skip[CLUSTER_MAX_MEMBERS], await[CLUSTER_MAX_MEMBERS];
  size_t nskip = 0, nawait = 0;
  for (size_t j = 0; j < njoined && nskip < CLUSTER_MAX_MEMBERS; j++)
    {
      skip[nskip++] = joined[j].nodeid;
      if (joined[j].reason == CPG_REASON_JOIN)
        await[nawait++] = joined[j].nodeid;
    }
  sync_offer (skip, nskip, await, nawait);
}

/* The totem ring: a node that drops out of it is down, even when its
 * agent had left the group before (then CPG reports no NODEDOWN for it). */
static void
cpg_totem_fn (cpg_handle_t h, struct cpg_ring_id ring_id, uint32_t n,
              const uint32_t *list)
{
  C.ring_id = ring_id.seq;
  struct cl_effects e = fx ();
  for (size_t i = 0; i < C.nring; i++)
    {
      bool still = false;
      for (uint32_t j = 0; j < n; j++)
        still |= list[j] == C.ring[i];
      if (!still && C.synced)
        {
          qb_log (LOG_NOTICE, "cluster: node %u left the ring", C.ring[i]);
          cl_table_member_left (&C.table, C.ring[i], true, &e);
        }
      else if (!still && C.seen_mark)
        replay_left (C.ring[i], true);
    }
  C.nring = n < CLUSTER_MAX_MEMBERS ? n : CLUSTER_MAX_MEMBERS;
  memcpy (C.ring, list, C.nring * sizeof *list);
  if (C.cb->on_members)
    C.cb->on_members (C.ud);
}

/* --- quorum and the lease --- */

/* Tell the node when quorum as it may act on it (votequorum's, and the
 * lease) changes. */
static void
quorum_update (void)
{
  bool q = cluster_quorate ();
  if (q == C.held_quorate)
    return;
  C.held_quorate = q;
  if (!q)
    C.standing_breaks++;
  if (C.cb->on_quorum)
    C.cb->on_quorum (C.ud, q);
}

static void
lease_expired (void *data)
{
  if (C.lease_lost || !C.lease_ms || clock_now_ns () < C.lease_until_ns)
    return;
  C.lease_lost = true;
  qb_log (LOG_WARNING,
          "cluster: corosync delivered no heartbeat of node %u "
          "for %u ms (quorum-loss-timeout-ms): writes are held as if quorum "
          "were lost",
          C.nodeid, C.lease_ms);
  quorum_update ();
}

static void
lease_arm (void)
{
  uint64_t now = clock_now_ns ();
  qb_loop_timer_del (C.loop, C.lease_timer);
  qb_loop_timer_add (C.loop, QB_LOOP_HIGH,
                     C.lease_until_ns > now ? C.lease_until_ns - now : 0, NULL,
                     lease_expired, &C.lease_timer);
}

/* The ring CPG delivers in is the one votequorum called quorate. */
static bool
ring_quorate_now (void)
{
  return C.quorate && !C.lost && C.quorum_ring == C.ring_id;
}

static void
lease_renew (uint64_t sent_ns)
{
  if (!C.lease_ms)
    return;
  uint64_t now = clock_now_ns ();
  if (!C.lease_lost && C.lease_until_ns <= now)
    lease_expired (NULL); /* ran out unnoticed: the loop was stopped */
  uint64_t until = sent_ns + (uint64_t) C.lease_ms * 1000000ull;
  if (until <= C.lease_until_ns || until <= now)
    return;
  if (!ring_quorate_now ())
    {
      if (!C.ring_warned)
        qb_log (LOG_WARNING,
                "cluster: node %u: a heartbeat was delivered in "
                "ring %" PRIu64 ", which votequorum has not called quorate "
                "(last quorate ring %" PRIu64 "): it renews no lease",
                C.nodeid, C.ring_id, C.quorate ? C.quorum_ring : 0);
      C.ring_warned = true;
      return;
    }
  C.ring_warned = false;
  C.lease_until_ns = until;
  lease_arm ();
  if (C.lease_lost)
    {
      C.lease_lost = false;
      qb_log (LOG_NOTICE,
              "cluster: corosync delivers this node's heartbeats "
              "again, in quorate ring %" PRIu64,
              C.ring_id);
      quorum_update ();
    }
}

static void
heartbeat (void *data)
{
  if (!C.running || !C.lease_ms || C.lost)
    return;
  uint64_t now = clock_now_ns ();
  struct cl_msg m = { .type = CL_MSG_NOP };
  if (C.hb_n < sizeof C.hb_sent / sizeof *C.hb_sent && send_msg (&m) == 0)
    C.hb_sent[C.hb_n++] = now;
  unsigned every = C.lease_ms / 4 > 20 ? C.lease_ms / 4 : 20;
  qb_loop_timer_add (C.loop, QB_LOOP_HIGH, (uint64_t) every * 1000000ull, NULL,
                     heartbeat, &C.hb_timer);
}

static void quorum_set (bool q);

static void cluster_reconnect (void *data);

/* Is process pid gone (no such process, or a zombie not reaped yet)? */
static bool
cluster_pid_gone (int pid)
{
  if (kill (pid, 0) < 0)
    return errno == ESRCH;
  char path[64], buf[256];
  snprintf (path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen (path, "r");
  if (!f)
    return false;
  size_t n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  const char *p = strrchr (buf, ')'); /* after "pid (comm)" */
  return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Remove directory name of parent (the rings in it, then itself). */
static int
cluster_rmdir (int parent, const char *name)
{
  int fd = openat (parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  DIR *d = fd < 0 ? NULL : fdopendir (fd);
  if (!d)
    {
      if (fd >= 0)
        close (fd);
      return -1;
    }
  struct dirent *de;
  while ((de = readdir (d)))
    if (strcmp (de->d_name, ".") && strcmp (de->d_name, ".."))
      unlinkat (dirfd (d), de->d_name, 0);
  closedir (d);
  return unlinkat (parent, name, AT_REMOVEDIR);
}

/* Remove the IPC directories (and their 3 MiB of rings) libqb left for
 * this process's connections to a corosync that is gone. */
static void
cluster_shm_sweep (void)
{
  DIR *d = opendir ("/dev/shm");
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      int server, client, fd, end = 0;
      if (sscanf (de->d_name, "qb-%d-%d-%d-%n", &server, &client, &fd, &end)
              != 3
          || end == 0 || client != (int) getpid () || server <= 0
          || !cluster_pid_gone (server))
        continue;
      if (cluster_rmdir (dirfd (d), de->d_name) == 0)
        qb_log (LOG_DEBUG,
                "cluster: removed /dev/shm/%s, left by a "
                "connection to corosync process %d, which is gone",
                de->d_name, server);
    }
  closedir (d);
}

/* corosync went away (stopped, restarted, or dropped this client): nothing
 * this node knows is current any more.  Writes are held (quorum lost, the
 * lease gone); the handles are closed and cluster_reconnect tries again
 * every CLUSTER_RECONNECT_MS.  Back in the group, this node is a joiner
 * with a stale table: it takes the table of the quorate side. */
static void many_drop (void);

static void
cluster_lost (int fd, const char *what)
{
  if (C.lost)
    return;
  C.lost = true;
  qb_log (LOG_ERR,
          "cluster: node %u lost the connection to corosync (%s): "
          "writes are held; reconnecting every %u ms",
          C.nodeid, what, CLUSTER_RECONNECT_MS);
  C.lease_lost = true;
  quorum_set (false);
  C.stale = true;
  qb_loop_poll_del (C.loop, C.cpg_fd);
  qb_loop_poll_del (C.loop, C.quorum_fd);
  cpg_finalize (C.cpg);
  quorum_finalize (C.quorum);
  qb_loop_timer_del (C.loop, C.hb_timer);
  qb_loop_timer_del (C.loop, C.stale_timer);
  qb_loop_timer_del (C.loop, C.watch_timer);
  if (C.retry_armed)
    qb_loop_timer_del (C.loop, C.retry_timer);
  C.retry_armed = false;
  pending_free (&C.out_head, &C.out_tail);
  pending_free (&C.replay_head, &C.replay_tail);
  many_drop ();
  sync_reset ();
  C.hb_n = 0;
  C.nmembers = 0; /* no group while disconnected */
  C.reconnects = 0;
  qb_loop_timer_add (C.loop, QB_LOOP_HIGH, CLUSTER_RECONNECT_MS * 1000000ull,
                     NULL, cluster_reconnect, &C.reconnect_timer);
}

/* CPG's messages, one at a time, for at most CPG_DISPATCH_NS of the
 * clock per turn of the loop, and no more once the node's I/O is waiting
 * (io_waiting); what is left keeps the descriptor readable, so the loop
 * comes back after the rest of its work.  CS_DISPATCH_ALL
 * returns only when no message is waiting: while a state transfer of
 * 100,000 volumes streamed in (782 pieces), a joiner's loop did not turn
 * for 295 ms (bench/scale-join). */
#define CPG_DISPATCH_NS (2 * 1000000ull)

/* A DEFINE_MANY is applied a definition at a time, as the DEFINEs it
 * stands for would be, with a look at the node's I/O after each: a
 * creating host's turn of 32 definitions in one message applied in one
 * stretch (2-4 ms of a receiving host's loop on this machine) took host
 * 2's NBD p99 in a batch from 2x a qemu-nbd beside it to 5x (bench/scale
 * 10,000).  Nothing else of CPG's is dispatched until its last
 * definition is applied: the order of the table stays the group's. */

static void
many_drop (void)
{
  if (C.many_on)
    cl_msg_free (&C.many);
  C.many_on = false;
  if (C.many_armed)
    qb_loop_timer_del (C.loop, C.many_timer);
  C.many_armed = false;
}

/* Apply the DEFINE_MANY under way until it ends (true), or until the
 * turn's time is up or the node's I/O waits (false; *yield for the I/O). */
static bool
many_apply (uint64_t until, bool *yield)
{
  struct cl_effects fxs = fx ();
  while (C.many_next < C.many.nvols)
    {
      cl_table_define_nth (&C.table, C.many_from, &C.many, C.many_next++, &fxs);
      if (C.many_next < C.many.nvols
          && (clock_now_ns () >= until || (*yield = io_waiting ())))
        return false;
    }
  cl_msg_free (&C.many);
  C.many_on = false;
  return true;
}

static int cpg_dispatch_fd (int fd, int revents, void *data);

static void
many_resume (void *data)
{
  C.many_armed = false;
  if (C.running && !C.lost)
    cpg_dispatch_fd (C.cpg_fd, POLLIN, NULL);
}

static int
cpg_dispatch_fd (int fd, int revents, void *data)
{
  uint64_t until = clock_now_ns () + CPG_DISPATCH_NS;
  cpg_handle_t h = C.cpg;
  cs_error_t e = CS_OK;
  /* One store transaction for what the turn's messages define: one each
   * wrote about 10 KB of log per definition on every other host. */
  bool yield = false;
  if (C.cb->on_batch)
    C.cb->on_batch (C.ud, CLUSTER_BATCH_BEGIN);
  /* The rest of a DEFINE_MANY first; then messages while there is time
   * and no I/O waits. */
  bool more = !C.many_on
              || (many_apply (until, &yield) && clock_now_ns () < until
                  && !(yield = io_waiting ()));
  while (more)
    {
      C.dispatching = true;
      e = cpg_dispatch (h, CS_DISPATCH_ONE_NONBLOCKING);
      C.dispatching = false;
      if (e == CS_OK && C.many_on && !many_apply (until, &yield))
        break;
      more = e == CS_OK && !C.lost && C.cpg == h && clock_now_ns () < until
             && !(yield = io_waiting ());
    }
  if (C.cb->on_batch)
    C.cb->on_batch (C.ud, yield ? CLUSTER_BATCH_YIELD : CLUSTER_BATCH_END);
  if (e != CS_OK && e != CS_ERR_TRY_AGAIN && C.cpg == h)
    cluster_lost (fd, "cpg");
  /* The rest of a DEFINE_MANY: its descriptor may not be readable. */
  else if (C.many_on && !C.many_armed && !C.lost)
    {
      C.many_armed = true;
      qb_loop_timer_add (C.loop, QB_LOOP_HIGH, 0, NULL, many_resume,
                         &C.many_timer);
    }
  return 0;
}

/* votequorum's word (or corosync gone: false). */
static void
quorum_set (bool q)
{
  if (q == C.quorate)
    return;
  C.quorate = q;
  if (!q && C.synced)
    C.stale = true;
  qb_log (q ? LOG_NOTICE : LOG_WARNING, "cluster: this node is %s",
          q ? "quorate" : "NOT quorate: writes are held");
  quorum_update ();
}

static void
quorum_notify_fn (quorum_handle_t h, uint32_t quorate, uint64_t ring_seq,
                  uint32_t n, uint32_t *view)
{
  qb_log (LOG_DEBUG, "cluster: votequorum: ring %" PRIu64 " is %squorate",
          ring_seq, quorate ? "" : "not ");
  C.quorum_ring = ring_seq;
  quorum_set (quorate != 0);
}

static int
quorum_dispatch_fd (int fd, int revents, void *data)
{
  if (quorum_dispatch (C.quorum, CS_DISPATCH_ALL) != CS_OK)
    cluster_lost (fd, "quorum");
  return 0;
}

static int
quorum_start (void)
{
  quorum_callbacks_t qcb = { .quorum_notify_fn = quorum_notify_fn };
  uint32_t type;
  int fd;
  if (quorum_initialize (&C.quorum, &qcb, &type) != CS_OK)
    return -1;
  if (quorum_fd_get (C.quorum, &fd) != CS_OK)
    {
      quorum_finalize (C.quorum);
      return -1;
    }
  C.quorum_fd = fd;
  int q = 0;
  quorum_getquorate (C.quorum, &q);
  C.quorate = q != 0;
  quorum_trackstart (C.quorum, CS_TRACK_CURRENT | CS_TRACK_CHANGES);
  qb_loop_poll_add (C.loop, QB_LOOP_HIGH, fd, POLLIN, NULL, quorum_dispatch_fd);
  return 0;
}

/* How the lease compares with the time the others need to form a new
 * membership without this node (token + consensus, read from cmap). */
static void
lease_check_totem (void)
{
  cmap_handle_t h;
  uint32_t token = 0, consensus = 0;
  if (cmap_initialize (&h) != CS_OK)
    return;
  cs_error_t e1 = cmap_get_uint32 (h, "runtime.config.totem.token", &token);
  cs_error_t e2
      = cmap_get_uint32 (h, "runtime.config.totem.consensus", &consensus);
  cmap_finalize (h);
  if (e1 != CS_OK || e2 != CS_OK)
    return;
  uint32_t decide = token + consensus;
  if (C.lease_ms >= decide)
    qb_log (LOG_WARNING,
            "cluster: node %u: quorum-loss-timeout-ms (%u) is "
            "not shorter than corosync's token + consensus (%u + %u ms): an "
            "owner cut off from the others could acknowledge writes after "
            "they have formed a membership without it; set it below %u",
            C.nodeid, C.lease_ms, token, consensus, decide);
  else
    qb_log (LOG_INFO,
            "cluster: node %u: lease %u ms, corosync decides a "
            "new membership after token + consensus (%u + %u ms)",
            C.nodeid, C.lease_ms, token, consensus);
}

/* --- API --- */

/* Connect to corosync, join the group and poll both handles.  At start a
 * busy corosync (TRY_AGAIN) is waited for up to 2 s; a reconnection from
 * the loop does not wait (its timer tries again).  0 or -ENOTCONN. */
static int
cluster_connect (bool wait)
{
  static cpg_model_v1_data_t model = {
    .cpg_deliver_fn = cpg_deliver_fn,
    .cpg_confchg_fn = cpg_confchg_fn,
    .cpg_totem_confchg_fn = cpg_totem_fn,
    .flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
  };
  struct cpg_name g;
  g.length = (uint32_t) strlen (C.group);
  memcpy (g.value, C.group, g.length);
  if (cpg_model_initialize (&C.cpg, CPG_MODEL_V1, (cpg_model_data_t *) &model,
                            NULL)
      != CS_OK)
    {
      /* The caller says it, with the cluster's name (-ENOTCONN). */
      qb_log (LOG_DEBUG, "cluster: cannot connect to corosync");
      return -ENOTCONN;
    }
  cpg_local_get (C.cpg, &C.nodeid);
  /* A new membership begins: this node joins it (a joiner takes the
   * table); what it knew of earlier joins and fences no longer counts. */
  C.njoined = C.nfenced_away = 0;
  if (quorum_start () < 0)
    {
      if (wait)
        qb_log (LOG_ERR, "cluster: cannot connect to corosync's quorum "
                         "service");
      cpg_finalize (C.cpg);
      return -ENOTCONN;
    }
  cs_error_t e;
  for (unsigned ms = 1;
       (e = cpg_join (C.cpg, &g)) == CS_ERR_TRY_AGAIN && wait && ms < 2000;
       ms *= 2)
    nanosleep (&(struct timespec){ 0, (long) ms * 1000000 }, NULL);
  if (e != CS_OK || cpg_fd_get (C.cpg, &C.cpg_fd) != CS_OK)
    {
      if (wait)
        qb_log (LOG_ERR,
                "cluster: cannot join group %s (corosync error "
                "%d)",
                C.group, e);
      qb_loop_poll_del (C.loop, C.quorum_fd);
      cpg_finalize (C.cpg);
      quorum_finalize (C.quorum);
      return -ENOTCONN;
    }
  qb_loop_poll_add (C.loop, QB_LOOP_HIGH, C.cpg_fd, POLLIN, NULL,
                    cpg_dispatch_fd);
  return 0;
}

/* The lease's heartbeats, from a fresh start. */
static void
lease_start (void)
{
  if (!C.lease_ms)
    return;
  lease_check_totem ();
  C.lease_until_ns = clock_now_ns () + (uint64_t) C.lease_ms * 1000000ull;
  lease_arm ();
  heartbeat (NULL);
}

/* Try to get back into the group after the connection was lost.  Until a
 * NOP of this node comes back in a quorate ring the lease stays lost, and
 * until the quorate side's table arrives (SYNC_DATA after its mark) the
 * table is not applied: cowd holds what it serves meanwhile. */
static void
cluster_reconnect (void *data)
{
  if (!C.running || !C.lost)
    return;
  C.reconnects++;
  if (cluster_connect (false) < 0)
    {
      if (C.reconnects % 30 == 0)
        qb_log (LOG_WARNING,
                "cluster: node %u: corosync still unreachable "
                "after %u attempts; writes stay held",
                C.nodeid, C.reconnects);
      qb_loop_timer_add (C.loop, QB_LOOP_HIGH,
                         CLUSTER_RECONNECT_MS * 1000000ull, NULL,
                         cluster_reconnect, &C.reconnect_timer);
      return;
    }
  C.lost = false;
  C.synced = false; /* a joiner until the table arrives */
  sync_reset ();
  C.backoff_ms = 1;
  cluster_shm_sweep ();
  qb_log (LOG_NOTICE,
          "cluster: node %u reconnected to corosync and "
          "rejoined group %s (%s); waiting for the table",
          C.nodeid, C.group, C.quorate ? "quorate" : "not quorate");
  /* The old lease is gone: heartbeats again, but quorum comes back only
   * with a NOP delivered in a quorate ring (lease_lost stays true). */
  if (C.lease_ms)
    heartbeat (NULL);
}

int
cluster_start (qb_loop_t *loop, const char *name,
               const struct cluster_callbacks *cb, void *ud)
{
  C.loop = loop;
  C.sync_fd = -1;
  C.send_armed = C.job_armed = false;
  /* Nothing of an earlier start in this process (the unit tests start
   * the group many times in one). */
  C.synced = C.stale = C.adopted_local = false;
  sync_reset ();
  pending_free (&C.replay_head, &C.replay_tail);
  cl_table_clear (&C.table);
  C.nhaves = C.nawait = 0;
  C.cb = cb;
  C.ud = ud;
  C.backoff_ms = 1;
  snprintf (C.group, sizeof C.group, "cowherd:%s", name);
  int r = sync_fd_open ();
  if (r < 0)
    {
      qb_log (LOG_ERR, "cluster: cannot make the state transfer's eventfd: %s",
              strerror (-r));
      return r;
    }
  r = cluster_connect (true);
  if (r < 0)
    return r;
  C.running = true;
  C.held_quorate = C.quorate;
  lease_start ();
  if (C.has_local)
    {
      /* What this node holds, ordered after its join: usually before the
       * mark its join makes another member send. */
      struct cl_msg have = { .type = CL_MSG_SYNC_HAVE, .digest = C.local };
      send_msg (&have);
    }
  qb_log (LOG_NOTICE, "cluster: node %u joined group %s (%s)", C.nodeid,
          C.group, C.quorate ? "quorate" : "not quorate");
  return 0;
}

void
cluster_stop (void)
{
  if (!C.running)
    return;
  if (C.sync_fd >= 0)
    {
      qb_loop_poll_del (C.loop, C.sync_fd);
      close (C.sync_fd);
      C.sync_fd = -1;
    }
  many_drop ();
  if (C.lost)
    {
      qb_loop_timer_del (C.loop, C.reconnect_timer);
      C.running = false;
      return; /* the handles are closed already */
    }
  send_flush_for (UINT64_MAX); /* what this agent said last, all of it */
  struct cpg_name g;
  g.length = (uint32_t) strlen (C.group);
  memcpy (g.value, C.group, g.length);
  cpg_leave (C.cpg, &g);
  cpg_finalize (C.cpg);
  quorum_finalize (C.quorum);
  qb_loop_timer_del (C.loop, C.hb_timer);
  qb_loop_timer_del (C.loop, C.lease_timer);
  qb_loop_timer_del (C.loop, C.stale_timer);
  qb_loop_timer_del (C.loop, C.watch_timer);
  qb_loop_timer_del (C.loop, C.await_timer);
  C.running = false;
}

bool
cluster_running (void)
{
  return C.running;
}
uint32_t
cluster_nodeid (void)
{
  return C.nodeid;
}
bool
cluster_quorate (void)
{
  return C.quorate && !C.lease_lost;
}

uint64_t
cluster_lease_deadline_ns (void)
{
  if (!C.running)
    return UINT64_MAX;
  if (!cluster_quorate () || C.lost)
    return 0;
  return C.lease_ms ? C.lease_until_ns : UINT64_MAX;
}
void
cluster_set_lease (unsigned ms)
{
  C.lease_ms = ms;
}
void
cluster_set_local (const struct cluster_digest *d)
{
  C.has_local = d != NULL;
  if (d)
    C.local = *d;
}
bool
cluster_adopted_local (void)
{
  return C.adopted_local;
}
uint64_t
cluster_standing_breaks (void)
{
  return C.standing_breaks;
}
bool
cluster_synced (void)
{
  return C.synced;
}
size_t
cluster_table_size (void)
{
  return C.table.n;
}
double
cluster_sync_max_step_ms (void)
{
  return (double) C.sync_max_step_ns / 1e6;
}

void
cluster_set_stale (void)
{
  C.stale = true;
}

/* This agent found itself fenced while in the group: no merge will bring
 * it the group's table, so it asks for one and takes it like a joiner. */
int
cluster_resync (void)
{
  if (!C.running || C.lost || !C.synced)
    return 0; /* a joiner already, or a reconnection */
  qb_log (LOG_NOTICE, "cluster: node %u asks the group for its table",
          C.nodeid);
  C.stale = true;
  C.synced = false;
  sync_reset ();
  struct cl_msg req = { .type = CL_MSG_SYNC_REQUEST };
  return send_msg (&req);
}

/* The nodes the table holds volumes in fencing for, up to max. */
static size_t
fence_victims (uint32_t *nodes, size_t max)
{
  size_t n = 0;
  for (size_t i = 0; i < C.table.n; i++)
    {
      const struct cluster_vol *v = &C.table.vols[i];
      if (v->state != CL_FENCING)
        continue;
      size_t k = 0;
      while (k < n && nodes[k] != v->fenced_node)
        k++;
      if (k == n && n < max)
        nodes[n++] = v->fenced_node;
    }
  return n;
}

/* The fencer is the lowest member that is not waiting to be fenced
 * itself: a victim's restarted agent may rejoin before the fence is done
 * (corosync restarted on its host, then cowd), and a node never fences
 * itself.  One pass over the table. */
bool
cluster_is_fencer (void)
{
  if (!cluster_quorate () || !C.synced || C.stale || !C.nmembers)
    return false;
  uint32_t victims[CLUSTER_MAX_MEMBERS];
  size_t nv = fence_victims (victims, CLUSTER_MAX_MEMBERS);
  if (listed (victims, nv, C.nodeid))
    return false;
  for (size_t i = 0; i < C.nmembers; i++)
    if (C.members[i] < C.nodeid && !listed (victims, nv, C.members[i]))
      return false;
  return true;
}

bool
cluster_fence_pending (uint32_t node)
{
  for (size_t i = 0; i < C.table.n; i++)
    if (C.table.vols[i].state == CL_FENCING
        && C.table.vols[i].fenced_node == node)
      return true;
  return false;
}
uint64_t
cluster_ring_id (void)
{
  return C.ring_id;
}

size_t
cluster_members (uint32_t *nodes, size_t max)
{
  size_t n = C.nmembers < max ? C.nmembers : max;
  memcpy (nodes, C.members, n * sizeof *nodes);
  return n;
}

const struct cluster_vol *
cluster_lookup (const char *vol)
{
  return cl_table_find (&C.table, vol);
}

void
cluster_foreach (void (*fn) (void *ud, const struct cluster_vol *v), void *ud)
{
  for (size_t i = 0; i < C.table.n; i++)
    fn (ud, &C.table.vols[i]);
}

static int
send_vol (uint16_t type, const char *vol, uint32_t node, uint64_t gen)
{
  struct cl_msg m = { .type = type, .node = node, .generation = gen };
  if (strlen (vol) >= CLUSTER_NAME_MAX)
    return -ENAMETOOLONG;
  strcpy (m.def.name, vol);
  return send_msg (&m);
}

int
cluster_define (const struct cluster_voldef *def)
{
  struct cl_msg m = { .type = CL_MSG_DEFINE, .def = *def };
  return send_msg (&m);
}

/* Up to CL_PIECE_MAX bytes of definitions a message. */
int
cluster_define_many (const struct cluster_voldef *defs, size_t n)
{
  enum
  {
    MAX = 256
  };
  static struct cluster_vol vols[MAX];
  size_t i = 0;
  int r = 0;
  while (i < n && r == 0)
    {
      size_t k = 0, bytes = CL_PIECE_OVERHEAD;
      while (i < n && k < MAX)
        {
          memset (&vols[k], 0, sizeof vols[k]);
          vols[k].def = defs[i];
          size_t sz = cl_msg_piece_vol_size (&vols[k]);
          if (k > 0 && bytes + sz > CL_PIECE_MAX)
            break;
          bytes += sz;
          k++;
          i++;
        }
      struct cl_msg m = { .type = CL_MSG_DEFINE_MANY,
                          .vols = vols,
                          .nvols = (uint32_t) k,
                          .total = (uint32_t) k,
                          .last = true };
      r = send_msg (&m);
    }
  return r;
}

int
cluster_undefine (const char *vol)
{
  return send_vol (CL_MSG_UNDEFINE, vol, 0, 0);
}

int
cluster_acquire (const char *vol)
{
  if (!cluster_quorate ())
    return -ENOTCONN;
  return send_vol (CL_MSG_ACQUIRE, vol, 0, 0);
}

int
cluster_release (const char *vol, uint64_t generation)
{
  return send_vol (CL_MSG_RELEASE, vol, 0, generation);
}

int
cluster_handoff (const char *vol, uint32_t to, uint64_t generation)
{
  return send_vol (CL_MSG_HANDOFF, vol, to, generation);
}

int
cluster_handoff_refuse (const char *vol, uint32_t to, int err)
{
  struct cl_msg m
      = { .type = CL_MSG_HANDOFF_REFUSED, .node = to, .error = (uint32_t) err };
  if (strlen (vol) >= CLUSTER_NAME_MAX)
    return -ENAMETOOLONG;
  strcpy (m.def.name, vol);
  return send_msg (&m);
}

int
cluster_migrate (const char *vol, uint32_t to)
{
  if (!cluster_quorate ())
    return -ENOTCONN;
  return send_vol (CL_MSG_MIGRATE, vol, to, 0);
}

/* FENCE_CONFIRM and FENCED release volumes: only from a quorate view. */
static int
send_node (uint16_t type, uint32_t node)
{
  if (!cluster_quorate ())
    return -ENOTCONN;
  struct cl_msg m = { .type = type, .node = node };
  return send_msg (&m);
}

int
cluster_fence_confirm (uint32_t node)
{
  return send_node (CL_MSG_FENCE_CONFIRM, node);
}

int
cluster_fenced (uint32_t node)
{
  return send_node (CL_MSG_FENCED, node);
}
