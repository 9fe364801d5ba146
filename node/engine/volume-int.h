/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Private to the volume engine (volume.c, vol-io.c, vol-commit.c,
 * vol-lock.c).  Everything here is owned by cowd's main thread: the engine
 * runs on the qb_loop and takes no locks other than its chunk locks, which
 * order requests, not threads. */
#ifndef COWD_VOLUME_INT_H
#define COWD_VOLUME_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <qb/qbloop.h>

#include "backend.h"
#include "loop.h"
#include "lograte.h"
#include "volume.h"

/* The alignment of every IO the engine issues to a backend. */
#define VOL_ALIGN 4096u

#define LOCK_BUCKETS 4096u

enum vreq_type
{
  VR_READ,
  VR_WRITE,
  VR_FLUSH,
  VR_TRIM,
  VR_HYDRATE, /* copy the clear chunks of c0..c1 */
};

/* One client request travelling through the engine. */
struct vreq
{
  struct vreq *next; /* whichever list the request is on */
  struct volume *v;
  enum vreq_type type;
  char *buf; /* aligned request range (maybe a bounce) */
  uint64_t off;
  uint32_t len;
  unsigned flags;
  vol_done_fn *done;
  void *opaque;
  int err;          /* first error of any sub-IO */
  unsigned pending; /* sub-IOs outstanding */
  uint64_t c0, c1;  /* chunks covered, inclusive */
  bool locked;
  char *ubuf; /* unaligned read: the caller's buffer */
  uint64_t uoff;
  uint32_t ulen;
  char *alloc;   /* our own buffer (bounce, zeroes), freed at ack */
  bool internal; /* an engine read (export): not counted as
                  * a client's */
};

/* FIFO lists of requests (hold, lock wait, parked): head and tail. */
static inline void
vreq_append (struct vreq **head, struct vreq **tail, struct vreq *rq)
{
  rq->next = NULL;
  if (*tail)
    (*tail)->next = rq;
  else
    *head = rq;
  *tail = rq;
}

/* Empty a list; returns what it held, for vreq_pop. */
static inline struct vreq *
vreq_take (struct vreq **head, struct vreq **tail)
{
  struct vreq *list = *head;
  *head = *tail = NULL;
  return list;
}

static inline struct vreq *
vreq_pop (struct vreq **list)
{
  struct vreq *rq = *list;
  if (rq)
    {
      *list = rq->next;
      rq->next = NULL;
    }
  return rq;
}

/* A chunk lock: shared for plain reads and writes, exclusive while a
 * chunk is copied from the base or read-modify-written. */
struct chunk_lock
{
  struct chunk_lock *hnext;
  uint64_t chunk;
  unsigned shared;
  bool excl;
};

/* A frozen layer below the top (vol-chain.c): its device, superblock and
 * bitmap, read once at open; only rollback and merge write it. */
struct vol_layer
{
  struct backend *bk;
  struct dscow_super sb;
  uint8_t *map;    /* bitmap_bytes, as on disk */
  uint64_t chunks; /* bits set */
};

struct volume
{
  char *name;
  struct backend *base, *cow; /* cow: the top layer, the one written */
  struct dscow_super sb;      /* the top layer's */
  /* The frozen layers below the top, bottom first: lower[0] lies on the
   * base, the top on lower[nlower - 1] (vol-chain.c). */
  struct vol_layer lower[DSCOW_CHAIN_MAX];
  unsigned nlower;
  bool direct; /* O_DIRECT (not --buffered): new layers too */
  /* The options the volume was opened with: layers a takeover finds on
   * disk are opened with them (chain_refresh). */
  struct backend_opts bo;
  /* This host did not own the volume for a while (attached as not the
   * owner, or released): the owner may have changed the chain on disk,
   * so the next takeover walks it again (chain_refresh). */
  bool chain_check;
  enum dscow_commit commit;
  enum vol_state state;
  bool accept_base;    /* re-record a changed base, once */
  bool resume_merge;   /* vol_params.resume_merge */
  bool released_clean; /* vol_release marked it clean */
  uint64_t nchunks;
  uint32_t cs;       /* chunk size */
  uint64_t cow_base; /* byte offset of chunk 0's data on the CoW */

  /* Bitmaps (bitmap_bytes each, VOL_ALIGN-aligned):
   *  map:    bits whose chunk data is written (maybe not yet durable);
   *  dmap:   bits known durable on the CoW device;
   *  staged[2]: the blocks written by the last two commits (alternating):
   *          one is being written, the other waits for the next flush. */
  uint8_t *map, *dmap, *staged[2];
  bool *dirty; /* per bitmap block: map differs from disk */
  uint64_t nblocks;
  uint64_t cow_chunks; /* bits set in map */
  uint64_t generation; /* bumped at every commit */

  /* Chunk locks and the requests waiting for one. */
  struct chunk_lock *locks[LOCK_BUCKETS];
  struct vreq *lock_wait_head, *lock_wait_tail;

  /* Group commit (vol-commit.c): requests whose bits must become durable
   * wait on `waiters`; the running commit takes them as `batch`; once its
   * bitmap blocks are written they become `prev`, acked by the next flush. */
  bool committing;
  struct vreq *waiters, *batch, *prev;
  uint64_t *commit_blocks[2];
  uint64_t ncommit_blocks[2];
  unsigned seq;      /* commit number: staged[seq % 2] is ours */
  bool prev_written; /* prev's blocks are written, not flushed */
  unsigned commit_pending;
  int commit_err;
  uint64_t commit_t0[2]; /* when commit staged[i] started */

  /* Hold (handoff, quorum loss, close). */
  bool held;
  struct vreq *held_head, *held_tail;
  vol_done_fn *drained;
  /* An operation's hold (vol_hold_op: snapshot, rollback, merge): it ran
   * or waits; another hold came meanwhile and stands after it. */
  bool drained_op, op_active, op_superseded;
  void *drained_opaque;
  uint64_t in_flight;  /* requests accepted and not yet acked */
  uint64_t client_ns;  /* when the last client request came */
  unsigned submitting; /* inside vol_submit: acks are deferred */
  void (*want_owner_cb) (void *ud, struct volume *v);
  void *want_owner_ud;

  /* The lease gate (vol_set_lease): past the deadline nothing is started,
   * committed or acknowledged; completions wait on `parked` until
   * vol_confirm (delivered) or vol_fence (failed). */
  uint64_t (*lease_fn) (void *ud);
  void *lease_ud;
  struct vreq *parked_head, *parked_tail;
  int drain_err;            /* a drain's commit failed: left dirty */
  struct lograte commit_lr; /* repeated commit failures */

  struct vol_stats st;

  /* Hydration (vol-hydrate.c) */
  struct
  {
    struct cowd_timer timer;
    unsigned inflight;           /* VR_HYDRATE requests not yet acked */
    uint64_t cursor;             /* next chunk to look at */
    uint64_t next_ns;            /* throttle: no new copy before this */
    uint64_t win_ns, win_chunks; /* rate window */
    double rate;                 /* bytes per second, last window */
    uint64_t start_ns, end_ns;   /* this agent's run: started, hydrated */
    int err;
    bool finishing;     /* the last commit before the flag */
    bool committing;    /* a commit of the copies (hyd_commit) */
    uint64_t commit_ns; /* the oldest copy not in a commit yet, or 0 */
  } hyd;

  /* Merge of the top into the layer below (vol-merge.c) */
  struct
  {
    bool active, finishing;
    bool busy;            /* a copy is in flight (it counts in in_flight) */
    bool resumed;         /* started again after an interruption */
    unsigned pass;        /* 0: the top's chunks; then the redo chunks */
    uint64_t step_ns;     /* test hook: a pause between copies */
    uint64_t final_bytes; /* redo left for the held finish, at most */
    struct cowd_timer timer;
    uint64_t cursor;        /* next chunk of the top to look at */
    uint64_t copied, total; /* chunks copied, chunks of the top */
    uint8_t *redo;          /* written again since copied: copy again */
    int err;
    char *freed; /* the device the last merge freed */
  } mrg;

  /* The last export since open (vol-export.c), or NULL. */
  struct vol_exp *exp;
};

/* vol-lock.c */
bool lock_try (struct volume *v, struct vreq *rq);
void lock_release (struct volume *v, struct vreq *rq);
bool lock_chunk_excl_needed (struct volume *v, struct vreq *rq, uint64_t chunk);

/* vol-io.c */
void io_start (struct vreq *rq);
void io_finish (struct vreq *rq);
void io_complete (struct vreq *rq);

/* vol-commit.c */
void commit_enqueue (struct volume *v, struct vreq *rq);
void commit_mark_dirty (struct volume *v, uint64_t chunk);
bool commit_durable (struct volume *v, uint64_t c0, uint64_t c1);
bool commit_idle (struct volume *v);
/* Start a commit if requests wait for one and the lease holds. */
void commit_kick (struct volume *v);
/* Fail what waits for a commit that is not running (fenced, closing). */
void commit_fail_waiting (struct volume *v, int err);
int commit_internal (struct volume *v, vol_done_fn *done, void *opaque);
void commit_cow_flush (struct vreq *rq);

/* vol-chain.c */
int chain_open (struct volume *v, const struct vol_params *p,
                const struct backend_opts *bo, char *err, size_t errlen);
int chain_load_maps (struct volume *v, char *err, size_t errlen);
int chain_refresh (struct volume *v, char *err, size_t errlen);
void chain_free (struct volume *v);
/* A committed reset (DSCOW_FLAG_RESETTING) of the top is finished: its
 * bitmap zeroed on disk; the caller's next superblock clears the flag. */
int chain_reset_finish (struct volume *v, char *err, size_t errlen);
int chain_put_super (struct backend *bk, struct dscow_super *sb);
/* Is the device key names the base or a CoW layer of the volume? */
bool chain_uses (const struct volume *v, const char *key);
void chain_unlink_up (struct dscow_super *sb);

/* vol-merge.c */
void merge_kick (struct volume *v);
void merge_resume (struct volume *v);
void merge_stop (struct volume *v);
/* A write to the top's chunks c0..c1 (data, fill or trim) completed. */
void merge_note_write (struct volume *v, uint64_t c0, uint64_t c1);

/* vol-export.c */
bool export_running (const struct volume *v);
/* A write, write-zeroes or trim about to start: true when it waits for
 * the export to copy its chunks first (export_divert starts it later). */
bool export_divert (struct volume *v, struct vreq *rq);
void export_kick (struct volume *v);
/* A hold other than an operation's: the export fails. */
void export_abort (struct volume *v);
void export_free (struct volume *v);

/* The test hook: cowd exits at once when COWD_TEST_CRASH_AT names step. */
void vol_crash_point (const char *step);

/* vol-hydrate.c */
void hydrate_kick (struct volume *v);
void hydrate_stop (struct volume *v);

/* volume.c */
void vol_check_drained (struct volume *v);
/* The lease holds (or there is none) and the volume is not fenced: it may
 * start, commit and acknowledge. */
bool vol_lease_ok (const struct volume *v);
void vol_park (struct vreq *rq);
int vol_write_super (struct volume *v, bool flush_first);
int vol_defer_done (vol_done_fn *done, void *opaque, int err);
void *vol_alloc_aligned (size_t len);
int vol_zero_bitmap (struct backend *cow, const struct dscow_super *sb);
int vol_err (char *err, size_t errlen, const char *name, const char *dev,
             int code);

static inline uint64_t
vol_chunk_len (const struct volume *v, uint64_t c)
{
  uint64_t start = c * v->cs;
  uint64_t end = start + v->cs;
  return (end > v->sb.volume_size ? v->sb.volume_size : end) - start;
}

/* Where chunk c is read from: the top (v->nlower), a frozen layer
 * (0 .. nlower - 1, the nearest to the top that has it) or the base (-1).
 * Every layer maps chunk X to the same offset (one geometry). */
static inline int
vol_chunk_src (const struct volume *v, uint64_t c)
{
  if (dscow_bit_test (v->map, c))
    return (int) v->nlower;
  for (int i = (int) v->nlower - 1; i >= 0; i--)
    if (dscow_bit_test (v->lower[i].map, c))
      return i;
  return -1;
}

static inline struct backend *
vol_src_bk (const struct volume *v, int src)
{
  if (src < 0)
    return v->base;
  return src == (int) v->nlower ? v->cow : v->lower[src].bk;
}

/* The device offset of volume byte off in source src. */
static inline uint64_t
vol_src_off (const struct volume *v, int src, uint64_t off)
{
  return src < 0 ? off : v->cow_base + off;
}

/* volume.c: 0 when this node serves v now (active, not held), else -1
 * with "volume V is STATE on this node; run WHAT on its owner" or "volume
 * V is held (handoff or quorum loss); try again" in err.  For the
 * background jobs that only the owner runs (hydration, export). */
int vol_check_serving (const struct volume *v, const char *what, char *err,
                       size_t errlen);

#endif /* COWD_VOLUME_INT_H */
