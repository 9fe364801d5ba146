/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cluster.h: cowherd's cluster layer: one corosync CPG group per cluster
 * and votequorum, on cowd's main loop.
 *
 * The ownership table is a replicated state machine.  Every member applies
 * the same messages in corosync's agreed order (and the same membership
 * changes, which CPG delivers in that order too), so every member holds
 * the same table.  The table never depends on local state: a message's
 * sender is the one CPG names, quorum only decides whether a node *sends*
 * ACQUIRE or MIGRATE, and time enters only through the sender's clock
 * carried in the message (for bounce detection).
 *
 * Volume states: unowned, owned, handing-off (the owner drains for a
 * requester), fencing (the owner's node left while owning it; nobody may
 * take it until the node is fenced or an operator confirms it is down).
 *
 * A joining member adopts the table from a state transfer: the lowest
 * member of the old membership multicasts a SYNC marker; when that
 * marker is delivered it multicasts the table as of that point, in pieces
 * well inside CPG's message size; the joiner queues what it delivers after
 * the marker, defines the table's volumes in bounded batches from the
 * loop, replays the queue, and only then is synced.  When the joiners
 * hold the table's definitions already (a restarted agent: SYNC_HAVE),
 * the pieces carry only names and states (SYNC_STATES).
 *
 * Lookups by name, by CoW device and by CoW identity go through hash
 * indexes (table.c), so
 * a message costs the same with 100,000 volumes as with one.
 */
#ifndef COWHERD_CLUSTER_H
#define COWHERD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <qb/qbloop.h>

#define CLUSTER_NAME_MAX 64
#define CLUSTER_URI_MAX 256
#define CLUSTER_IDENT_MAX 128
#define CLUSTER_MAX_MEMBERS 64

struct cluster_voldef
{
  char name[CLUSTER_NAME_MAX];
  char base[CLUSTER_URI_MAX];
  char cow[CLUSTER_URI_MAX];
  /* The CoW LUN's VPD identity (SCSI page 0x83), or empty: it names the
   * device however it is reached, so two definitions cannot share it. */
  char cow_ident[CLUSTER_IDENT_MAX];
  uint32_t chunk_size;
  uint32_t commit;
  bool exclusive;
};

/* A digest of a set of definitions, whatever their order: how many, and
 * two sums of independent 64-bit hashes of each one's every field. */
struct cluster_digest
{
  uint64_t count;
  uint64_t sum[2];
};

void cluster_digest_add (struct cluster_digest *d,
                         const struct cluster_voldef *def);
void cluster_digest_sub (struct cluster_digest *d,
                         const struct cluster_voldef *def);
bool cluster_digest_equal (const struct cluster_digest *a,
                           const struct cluster_digest *b);

enum cluster_vol_state
{
  CL_UNOWNED = 0,
  CL_OWNED = 1,
  CL_HANDING_OFF = 2,
  CL_FENCING = 3,
};

struct cluster_vol
{
  struct cluster_voldef def;
  enum cluster_vol_state state;
  uint32_t owner; /* 0 = nobody */
  uint64_t epoch;
  uint64_t generation;  /* bitmap generation at the last handoff */
  uint32_t requester;   /* handing-off: to whom */
  uint32_t fenced_node; /* fencing: the node that left */
  /* Bounce detection: moves by request between the same two nodes. */
  uint32_t bounce_a, bounce_b, bounce_count;
  uint64_t bounce_since_ms;
  bool bouncing;
};

enum cluster_batch
{
  CLUSTER_BATCH_BEGIN,
  CLUSTER_BATCH_END,
  CLUSTER_BATCH_YIELD,
};

struct cluster_callbacks
{
  void (*on_define) (void *ud, const struct cluster_voldef *def, bool defined);
  /* Around each batch of on_define of a state transfer, and around each
   * turn of CPG messages (CLUSTER_BATCH_BEGIN, then END or YIELD): the
   * node may make the batch one transaction.  YIELD: the batch ended
   * early for the node's I/O (io_waiting), and more of its kind may wait
   * for the next turns: the node may keep its transaction open for them
   * (a turn that finds nothing more ends with END). */
  void (*on_batch) (void *ud, enum cluster_batch what);
  /* Is I/O of the node (NBD, its backends) ready to be served now?  Asked
   * between two pieces of work that runs in slices of the loop (a turn
   * of CPG messages, a step of a state transfer), which then ends its
   * slice early; each slice still does one piece.  May be NULL. */
  bool (*io_waiting) (void *ud);
  /* Ownership changed (or was confirmed after a state transfer). */
  void (*on_owner) (void *ud, const char *vol, uint32_t owner, uint64_t epoch,
                    uint64_t generation);
  /* This node owns vol and `to` asked for it: drain, flush, mark clean,
   * then cluster_handoff (vol, to, generation); or, when its storage
   * fails that, cluster_handoff_refuse (vol, to, errno). */
  void (*on_handoff_request) (void *ud, const char *vol, uint32_t to);
  void (*on_fencing) (void *ud, const char *vol, uint32_t node);
  /* Node `node` was fenced on the storage by `by` (storage true), or an
   * operator on `by` confirmed it down (storage false); its volumes are
   * unowned now.  Called on every member, the fenced one too. */
  void (*on_fenced) (void *ud, uint32_t node, uint32_t by, bool storage);
  void (*on_quorum) (void *ud, bool quorate);
  /* A request of this node was refused: a COW_E_* code (COW_E_HELD: it
   * waits, as for a fence) and one sentence. */
  void (*on_error) (void *ud, const char *vol, int code, const char *sentence);
  /* The table arrived after joining. */
  void (*on_synced) (void *ud);
  /* The group's membership changed (a node joined, left or went down),
   * after the table applied what the change means. */
  void (*on_members) (void *ud);
  /* This node's own definition of name (as cluster_set_local counted
   * it), for a table that came as states only; false when it has none. */
  bool (*local_def) (void *ud, const char *name, struct cluster_voldef *def);
};

int cluster_start (qb_loop_t *loop, const char *cluster_name,
                   const struct cluster_callbacks *cb, void *ud);
void cluster_stop (void);
bool cluster_running (void);
uint32_t cluster_nodeid (void);
/* Quorate as far as this node may act on it: votequorum says so and the
 * lease holds (cluster_set_lease, before cluster_start; 0 = no lease). */
bool cluster_quorate (void);
void cluster_set_lease (unsigned ms);
/* The definitions this node holds (before cluster_start; needs local_def):
 * at its join it tells the group their digest (SYNC_HAVE), and when the
 * group's table has the same definitions the table comes as states only
 * (SYNC_STATES), the definitions taken from local_def: an agent restarted
 * with 100,000 volumes receives a few bytes a volume, not the table.
 * NULL: it says nothing (and receives whole tables). */
void cluster_set_local (const struct cluster_digest *d);
/* The last table adopted came as states over this node's own
 * definitions: it holds every one of them, and nothing else. */
bool cluster_adopted_local (void);
/* Until when (cowd_now_ns) this node may acknowledge anything on the
 * volumes it owns: the lease's end, 0 when it ran out or quorum is lost,
 * UINT64_MAX with no lease (or before cluster_start). */
uint64_t cluster_lease_deadline_ns (void);
/* How many times this node stopped being quorate with a lease (quorum
 * lost, the lease ran out, corosync lost) or saw nodes go away leaving no
 * strict majority of its view (two_node: both halves stay quorate).
 * While it has not changed, no other node can have fenced this one: the
 * group fences only nodes that left its quorate membership, and leaving
 * costs the lease first, or the majority. */
uint64_t cluster_standing_breaks (void);
bool cluster_synced (void);
/* The most CPU one step of the joiner's state transfer took (ms): the
 * longest the transfer kept the loop at a time (0 before any). */
double cluster_sync_max_step_ms (void);
/* How many volumes the table holds. */
size_t cluster_table_size (void);

/* Requests: multicast in agreed order; 0 or -errno (-ENOTCONN when this
 * node is not quorate, for those that grant ownership). */
int cluster_define (const struct cluster_voldef *def);
/* Many definitions in few messages (each applies as a DEFINE). */
int cluster_define_many (const struct cluster_voldef *defs, size_t n);
int cluster_undefine (const char *vol);
int cluster_acquire (const char *vol);
int cluster_release (const char *vol, uint64_t generation);
int cluster_handoff (const char *vol, uint32_t to, uint64_t generation);
/* The owner keeps vol: the handoff to `to` failed on its storage (err, an
 * errno); `to` is told so (on_error, COW_E_HANDOFF_FAILED). */
int cluster_handoff_refuse (const char *vol, uint32_t to, int err);
int cluster_migrate (const char *vol, uint32_t to);
int cluster_fence_confirm (uint32_t node);
/* This node removed `node`'s keys from every LUN of its volumes. */
int cluster_fenced (uint32_t node);
/* The designated fencer: the lowest member of a quorate, synced view
 * that is not waiting to be fenced itself. */
bool cluster_is_fencer (void);
/* Does the table hold a volume of node in fencing? */
bool cluster_fence_pending (uint32_t node);
/* This agent was fenced: treat its table as stale until the next sync. */
void cluster_set_stale (void);
/* ... and ask the group for its table now (SYNC_REQUEST); on_synced when
 * it has arrived.  0 or -errno. */
int cluster_resync (void);

/* The table and the membership. */
const struct cluster_vol *cluster_lookup (const char *vol);
void cluster_foreach (void (*fn) (void *ud, const struct cluster_vol *v),
                      void *ud);
size_t cluster_members (uint32_t *nodes, size_t max);
uint64_t cluster_ring_id (void);
const char *cluster_state_name (enum cluster_vol_state s);

#endif /* COWHERD_CLUSTER_H */
