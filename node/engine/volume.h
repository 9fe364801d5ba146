/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The volume engine: a dscow volume served from a base and a CoW backend.
 *
 * Reads are split between base and CoW by the in-memory bitmap.  A write
 * to a chunk not yet in the CoW layer is a CoW fault: a partial write
 * copies the chunk from the base first, a full-chunk write skips the copy.
 * Requests that touch a chunk being copied wait for the copy, so nobody
 * sees a half-copied chunk.  Bits become durable per the commit policy,
 * always after the data they point to (data -> flush -> bitmap -> flush
 * -> ack).  See volume.c for the state machine.
 */
#ifndef COWD_VOLUME_H
#define COWD_VOLUME_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "dscow.h"
#include "backend.h"
#include "errcode.h"

struct volume;

typedef void vol_done_fn (void *opaque, int res); /* res: 0 or -errno */

#define VOL_FUA 0x1u     /* write durable (data and bit) before ack */
#define VOL_NO_HOLE 0x2u /* write_zeroes: do not punch */

/* Block status contexts */
enum vol_ctx
{
  VOL_CTX_ALLOCATION = 0, /* base:allocation: everything allocated */
  VOL_CTX_COW = 1,        /* cowherd:cow: which extents are in CoW */
};

struct vol_extent
{
  uint64_t length;
  uint32_t flags; /* for VOL_CTX_COW: 1 = in CoW layer */
};

enum vol_state
{
  VOL_STATE_ACTIVE = 0, /* serving reads and writes */
  VOL_STATE_HELD,       /* new requests held (handoff / no quorum) */
  VOL_STATE_READONLY,   /* not the owner: requests wait for it */
  VOL_STATE_FENCED,     /* writes rejected by the storage */
  VOL_STATE_DEGRADED,   /* a backend failed past its deadline */
};

#define VOL_HIST_BUCKETS 32

struct vol_stats
{
  uint64_t reads, writes, flushes, trims, zeroes;
  uint64_t bytes_read, bytes_written;
  uint64_t read_base_bytes, read_cow_bytes; /* add up to bytes_read */
  uint64_t cow_faults, full_chunk_writes;
  uint64_t commits;       /* bitmap commits (group commits) */
  uint64_t commit_faults; /* CoW faults covered by those commits */
  uint64_t errors;
  uint64_t in_flight;
  uint64_t blocking_io_ns;  /* the loop waited for this volume's devices */
  uint64_t hydrated_chunks; /* chunks copied by hydration, this open */
  uint64_t takeovers;       /* times this agent took the volume */
  uint64_t handoffs;        /* times it marked it clean to hand it off */
  /* Commit latency, from a commit's start to its bits being durable:
   * sum and count, and a histogram in powers of two of microseconds
   * (bucket i: below 2^i us). */
  uint64_t commit_ns_sum;
  uint64_t commit_hist[VOL_HIST_BUCKETS];
};

/* The latency below which a fraction q (0..1) of the commits finished,
 * in seconds (a bucket's upper bound), 0 when there was none. */
double vol_stats_quantile (const struct vol_stats *st, double q);

/* Hydration progress (vol_hydrate_info). */
struct vol_hydrate
{
  bool wanted;          /* the superblock asks for it */
  bool running;         /* copying here now (owner, not held) */
  bool hydrated;        /* done: the superblock's hydrated flag */
  uint32_t limit_mbs;   /* --rate, 0 = unlimited */
  uint64_t done, total; /* chunks in the CoW layer, chunks */
  uint64_t copied;      /* chunks this agent copied since open */
  double rate_mbs;      /* measured, recent */
  double eta_s;         /* < 0: unknown */
  double elapsed_s;     /* since it started (or resumed) here, until
                         * hydrated; 0 when it never ran here */
  int error;            /* last copy error (-errno), 0 = none */
};

struct vol_params
{
  const char *name;
  const char *base_uri;
  const char *cow_uri;
  uint32_t chunk_size;      /* 0 = default */
  enum dscow_commit commit; /* 0 = the superblock's */
  bool buffered;            /* plain files only: page cache on */
  bool force;               /* format over an existing volume */
  /* Open: the base changed on purpose; record it as it is now instead of
   * refusing (a change of size is refused all the same). */
  bool accept_base_change;
  /* Format and open: the name of another volume whose CoW device is cow
   * (compare cow->key, and cow->ident for a LUN), or NULL.  Optional. */
  const char *(*cow_user) (void *ud, const struct backend *cow);
  void *cow_user_ud;
  /* Format: is a volume of this name defined (here, or in the cluster's
   * table)?  A CoW device whose superblock names a defined volume other
   * than p->name is refused even with --force: however the device is
   * named (another portal, an alias), its superblock says whose it is.
   * Optional; called with cow_user_ud. */
  bool (*defined) (void *ud, const char *name);
  /* Format: where the CoW device's identity goes (backend.ident's size:
   * a LUN's "naa.6001...", a file's "digest:..."), or NULL. */
  char *cow_ident_out;
  /* Open: a merge the superblocks say was interrupted starts again by
   * itself once the volume is taken (a standalone cowd: the chain is this
   * host's alone). */
  bool resume_merge;
  /* Format: write the bitmap and the superblock, flush nothing: the caller
   * makes the device durable itself before anything names the volume
   * (create --from: one syncfs for many CoW files). */
  bool no_flush;
  /* Format: log nothing; the caller says what was formatted (a format on
   * a thread: the loop logs it, in the order of the batch's lines). */
  bool quiet;
};

/* Format the CoW device for a new volume.  Returns 0, or a negative
 * code (-COW_E_*, or -errno: see errcode.h) with one sentence naming the
 * volume and the cause in err (vol_open and vol_takeover likewise). */
int vol_format (const struct vol_params *p, const struct backend_opts *bo,
                char *err, size_t errlen);

/* The sentence for a CoW device that volume user has already: -1. */
int vol_err_cow_taken (char *err, size_t errlen, const char *name,
                       const char *cow, const char *user);

/* Open an existing volume.  Refused: a CoW device another volume uses
 * (cow_user), a superblock formatted for another name, a base whose size,
 * identity or stamp differ from the recorded ones (dscow(5)). */
int vol_open (const struct vol_params *p, const struct backend_opts *bo,
              struct volume **out, char *err, size_t errlen);
/* An attach that opens on a thread: vol_open there with
 * bo->blocking_only and bo->loop_later (nothing of the volume touches the
 * loop, and it may wait for its devices as long as they take), then this
 * on the loop, with the same options but those two: the devices serve
 * asynchronous calls from now on (iSCSI: the session's socket and timer,
 * and its on_login).  0, or -errno with one sentence in err (the volume
 * stays open: vol_close it). */
int vol_start_loop (struct volume *v, const struct backend_opts *bo, char *err,
                    size_t errlen);
/* Flush, mark clean and close.  done is called when finished. */
void vol_close (struct volume *v, vol_done_fn *done, void *opaque);

/* The data path.  Return 0 when queued (done is called later from the
 * loop) or -errno when refused at once. */
int vol_read (struct volume *v, void *buf, uint64_t off, uint32_t len,
              vol_done_fn *done, void *opaque);
int vol_write (struct volume *v, const void *buf, uint64_t off, uint32_t len,
               unsigned flags, vol_done_fn *done, void *opaque);
int vol_flush (struct volume *v, vol_done_fn *done, void *opaque);
int vol_trim (struct volume *v, uint64_t off, uint32_t len, unsigned flags,
              vol_done_fn *done, void *opaque);
int vol_write_zeroes (struct volume *v, uint64_t off, uint32_t len,
                      unsigned flags, vol_done_fn *done, void *opaque);
/* Synchronous: extents from the in-memory bitmap, at most maxext. */
size_t vol_block_status (struct volume *v, enum vol_ctx ctx, uint64_t off,
                         uint64_t len, struct vol_extent *ext, size_t maxext);

/* Introspection */
const char *vol_name (const struct volume *v);
uint64_t vol_size (const struct volume *v);
uint32_t vol_chunk_size (const struct volume *v);
bool vol_is_direct (const struct volume *v); /* O_DIRECT, new layers too */
bool vol_can_write (const struct volume *v);
enum vol_state vol_get_state (const struct volume *v);
const char *vol_state_name (enum vol_state s);
/* The CoW device's backend (the one written). */
struct backend *vol_cow_backend (struct volume *v);
/* The worst health of the two backends: "healthy", "reconnecting",
 * "degraded" (a backend failed past its deadline) or "fenced". */
const char *vol_health (const struct volume *v);
/* A backend failed past its deadline: its requests fail with EIO until a
 * login succeeds again. */
bool vol_degraded (const struct volume *v);
const struct dscow_super *vol_super (const struct volume *v);
uint64_t vol_cow_chunks (const struct volume *v);
uint64_t vol_generation (const struct volume *v);
const char *vol_commit_name (enum dscow_commit c);
int vol_commit_parse (const char *s, enum dscow_commit *c);

/* Ownership and handoff (cluster) support.  vol_hold stops new requests
 * (they queue) and calls drained once nothing is in flight and every bit
 * is durable; vol_resume serves the queue.  vol_mark_clean writes the
 * superblock clean with the current generation (the handoff point), after
 * a flush; vol_mark_clean_async does both at once without blocking, on a
 * drained volume, and calls done (which must not close v) with 0 or -errno;
 * vol_takeover re-reads superblock and bitmap from the CoW device, checks
 * the generation (0 = don't check), writes the new epoch and owner and
 * marks the superblock dirty. */
void vol_hold (struct volume *v, vol_done_fn *drained, void *opaque);
void vol_resume (struct volume *v);
/* The hold of an operation that changes the volume while it is drained
 * (snapshot, rollback, merge): -EBUSY when held already.  Any vol_hold
 * meanwhile wins: drained gets -ECANCELED if it has not run yet, and
 * vol_resume_op (which ends the operation, whatever drained got) then
 * leaves the volume held for it. */
int vol_hold_op (struct volume *v, vol_done_fn *drained, void *opaque);
void vol_resume_op (struct volume *v);
int vol_mark_clean (struct volume *v);
/* The owner's detach in a cluster, on a drained volume: vol_mark_clean,
 * then READONLY (nothing more is written) before the caller releases the
 * volume at vol_generation; the close that follows logs "closed clean at
 * generation N" when the mark succeeded (0 or -errno). */
int vol_release (struct volume *v);
void vol_mark_clean_async (struct volume *v, vol_done_fn *done, void *opaque);
int vol_takeover (struct volume *v, uint64_t epoch, uint32_t owner,
                  uint64_t expect_generation, char *err, size_t errlen);
/* vol_takeover in two: its reads and its superblock write, blocking
 * (which a thread that opened v for blocking calls only may run, before
 * vol_start_loop), then, on the loop, vol_takeover_done: v is ACTIVE and
 * a hydration or a merge under way goes on. */
int vol_takeover_io (struct volume *v, uint64_t epoch, uint32_t owner,
                     uint64_t expect_generation, char *err, size_t errlen);
void vol_takeover_done (struct volume *v);
/* vol_takeover without blocking the loop: done gets 0 (the volume is
 * ACTIVE) or -errno and one sentence.  done runs from a completion, or at
 * once when nothing could be sent; v must stay open until it has run. */
typedef void vol_takeover_fn (void *opaque, int res, const char *err);
void vol_takeover_async (struct volume *v, uint64_t epoch, uint32_t owner,
                         uint64_t expect_generation, vol_takeover_fn *done,
                         void *opaque);
/* FENCED is terminal: vol_set_state and vol_takeover never leave it. */
void vol_set_state (struct volume *v, enum vol_state s);
/* This host was fenced: fail what waits (EIO), what is in flight when it
 * completes, and everything from now on. */
void vol_fence (struct volume *v);
/* vol_hold is in force (a handoff or a quorum loss), until vol_resume. */
bool vol_is_held (const struct volume *v);
/* The lease (cluster): deadline(ud) says until when (cowd_now_ns) this
 * host may acknowledge; 0 = no longer.  Past it the engine starts and
 * commits nothing and parks every completion that would acknowledge or
 * answer a read; vol_confirm delivers them once the cluster has confirmed
 * this host still owns the volume at the same epoch (and the deadline is
 * ahead again); vol_fence fails them. */
void vol_set_lease (struct volume *v, uint64_t (*deadline) (void *ud),
                    void *ud);
void vol_confirm (struct volume *v);
/* This host may not write now: writes the CoW device's connection still
 * carries are dropped, not delivered later (backend abort). */
void vol_drop_writes (struct volume *v);
/* Requests may be answered now: neither fenced nor past the lease. */
bool vol_serving (const struct volume *v);
/* Requests wait on the volume (held, or not the owner). */
bool vol_has_waiters (const struct volume *v);
/* Called for each request that arrives while the volume is READONLY
 * (this host is not the owner): the cluster asks for ownership. */
void vol_set_want_owner_cb (struct volume *v,
                            void (*cb) (void *ud, struct volume *v), void *ud);
void vol_get_stats (const struct volume *v, struct vol_stats *st);

/* Background hydration (vol-hydrate.c): copy every chunk still on the
 * base into the CoW layer while the volume serves, at most rate_mbs MB/s
 * (0 = as fast as it yields to clients).  The wish is kept in the
 * superblock (DSCOW_COMPAT_HYDRATING), so it resumes after a restart and
 * continues on the next owner.  Start, change the rate and cancel need
 * the volume active here; they return 0 or -1 with a sentence in err. */
int vol_hydrate_start (struct volume *v, uint32_t rate_mbs, char *err,
                       size_t errlen);
int vol_hydrate_cancel (struct volume *v, char *err, size_t errlen);
void vol_hydrate_info (const struct volume *v, struct vol_hydrate *hi);
/* A hydrated volume no longer needs its base: close it.  Opening with no
 * base (vol_params.base_uri NULL) needs the hydrated flag too. */
int vol_drop_base (struct volume *v, char *err, size_t errlen);
bool vol_has_base (const struct volume *v);

/* Layer chains (vol-chain.c): snapshots, rollback, reset; dscow(5).
 * Each needs the volume active here and drained: the caller holds it
 * (vol_hold) and resumes it after.  They block on the devices, return 0
 * or a negative code with one sentence in err, and leave the chain either
 * as it was or as asked, on disk and in memory, whatever fails. */
struct vol_layer_info
{
  const char *name; /* the snapshot's name; NULL: the top */
  const char *uri;  /* its device */
  uint64_t chunks;  /* chunks it holds */
  uint64_t created; /* formatted, seconds since the epoch */
  uint64_t frozen;  /* snapshot taken, 0 for the top */
};
/* The layers, bottom first, the top last; returns how many (<= max). */
unsigned vol_layers (const struct volume *v, struct vol_layer_info *out,
                     unsigned max);
/* Freeze the top as snapshot `name` and continue on a new, empty layer on
 * device uri (formatted here). */
int vol_snapshot (struct volume *v, const char *uri, const char *name,
                  const struct backend_opts *bo, char *err, size_t errlen);
/* vol_snapshot in three steps, for a caller that opens the new layer's
 * device off the loop and before it holds the volume (an iSCSI login
 * waits up to the reconnect deadline: neither the volume's requests nor
 * the loop wait for it): vol_snapshot_check (loop: the volume may take a
 * snapshot named name on uri; before the drain, !drained: requests may be
 * in flight); vol_layer_open opens uri for the volume
 * named name, of size bytes in chunks of cs, and checks that it may
 * become a layer (it reads no volume: it may run on a thread; with
 * bo->blocking_only and loop_later the loop then calls backend_start_loop
 * on *nb); vol_snapshot_commit (loop, the volume held and drained, after
 * vol_snapshot_check again) formats nb, freezes the top and makes nb the
 * new one, or closes nb. */
int vol_snapshot_check (struct volume *v, const char *name, const char *uri,
                        bool drained, char *err, size_t errlen);
int vol_layer_open (const char *name, uint64_t size, uint32_t cs, bool direct,
                    const char *uri, const struct backend_opts *bo,
                    struct backend **nb, char *err, size_t errlen);
int vol_snapshot_commit (struct volume *v, const char *name, struct backend *nb,
                         char *err, size_t errlen);
/* name: empty the layer above snapshot `name` and drop the layers above
 * that; NULL (reset): empty the top.  freed (DSCOW_CHAIN_MAX entries) gets
 * the dropped devices, strdup'ed, *nfreed how many. */
int vol_rollback (struct volume *v, const char *name, char **freed,
                  unsigned *nfreed, char *err, size_t errlen);

/* Merge (vol-merge.c): copy the top into the frozen layer below it while
 * the volume serves, then make that layer the top and free the old one;
 * started here, progress in vol_merge_info. */
struct vol_merge
{
  bool running;
  bool resumed;             /* started again after an interruption */
  unsigned pass;            /* 0: the top's chunks; then those written again */
  uint64_t scanned, chunks; /* the copy's position, of chunks */
  uint64_t copied;          /* chunks copied by this merge */
  int error;                /* the last merge failed: -errno */
  const char *freed;        /* the device the last merge freed, or NULL */
};
int vol_merge_start (struct volume *v, char *err, size_t errlen);
void vol_merge_info (const struct volume *v, struct vol_merge *mi);

/* Export (vol-export.c): the volume's contents at the moment the export
 * starts, written as a linear raw image to another device while the
 * volume serves (copy-before-write).  vol_export_check, on the loop:
 * the volume serves here, runs no export, and uri is none of its devices.
 * vol_export_open_target opens the target (a path that does not exist is
 * created, sparse, of the volume's size: *created) and checks that it
 * holds size bytes; it touches no volume, so it may run on a thread (an
 * iSCSI login can wait for the reconnect deadline): with bo->blocking_only
 * and loop_later, the loop then calls backend_start_loop.
 * vol_export_begin takes the target and starts; the volume must be
 * drained (vol_hold_op) and is resumed by the caller.  Each returns 0, or
 * a negative code with one sentence in err. */
struct vol_export_info
{
  uint64_t id;       /* 0: no export since the volume opened */
  const char *state; /* running, done, failed, cancelled */
  const char *target;
  uint64_t done, total;    /* chunks on the target, chunks */
  uint64_t ahead;          /* copied ahead of a client write */
  uint64_t skipped;        /* zero, not written (a new target file) */
  uint64_t bytes;          /* the volume's size */
  uint32_t limit_mbs;      /* --rate, 0 = unlimited */
  double rate_mbs;         /* recent; when done, the average */
  double elapsed_s, eta_s; /* eta_s < 0: unknown */
  const char *error;       /* why it failed or stopped, or "" */
  int code;                /* its COW_E_* code (io, held, not-running) */
};
int vol_export_check (struct volume *v, const char *uri, char *err,
                      size_t errlen);
int vol_export_open_target (const char *name, uint64_t size, const char *uri,
                            const struct backend_opts *bo, struct backend **out,
                            bool *created, char *err, size_t errlen);
int vol_export_begin (struct volume *v, struct backend *target, bool zeroed,
                      uint32_t rate_mbs, char *err, size_t errlen);
int vol_export_cancel (struct volume *v, char *err, size_t errlen);
void vol_export_info (const struct volume *v, struct vol_export_info *xi);

#endif /* COWD_VOLUME_H */
