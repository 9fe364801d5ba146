/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cowd's daemon-wide state: the configuration and the table of volume
 * definitions.  Owned by the main thread. */
#ifndef COWD_COWD_H
#define COWD_COWD_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "volume.h"

struct nbd_export;

/* The base of a volume whose base was dropped (cowctl unbase). */
#define VOLDB_NO_BASE "none"

/* The levels of voldb's skip list (4^16 entries before it degrades). */
#define VOLDB_LEVELS 16

/* A volume definition, persisted as one row of STATE_DIR/volumes.db
 * (store.c).  Indexed by name, by CoW device and by LUN identity
 * (voldb.c); cowd.vols lists them sorted by name. */
struct vol_entry
{
  struct vol_entry *next; /* by name; level 0 of the skip list */
  struct vol_entry **up;  /* levels 1..levels-1, or NULL */
  uint8_t levels;
  char *cow_key;   /* backend_key of cow when indexed; NULL: not yet */
  size_t unres_at; /* 1 + its place among those whose key is "path:" */
  size_t pend_at;  /* 1 + its place among those without a key yet */
  char *name;
  char *base; /* path or iscsi:// URL */
  char *cow;
  char *cow_ident; /* the CoW LUN's VPD identity, or NULL */
  uint32_t chunk_size;
  enum dscow_commit commit;
  bool exclusive; /* hands over only on explicit migrate */
  bool buffered;  /* plain files: page cache on (one host) */
  bool attached;  /* serve it (again after a restart) */
  /* Runtime */
  char *error;             /* why the last attach failed, or NULL */
  bool accept_base_change; /* the attach under way records the base */
  struct volume *vol;
  uint64_t attach_id; /* a new one each time vol is set: voldb_opened */
  struct nbd_export *exp;
  bool closing;
  bool opening; /* voldb_attach_async: its devices open on a thread */
  bool gone;    /* deleted in the cluster while opening: forget it then */
  struct voldb_joiner *joiners; /* the attaches that wait for that open */
  bool creating;       /* checked, not yet durable (a slice of create or
                          create --from: its device is being formatted or
                          made durable): commands refuse it, the cluster
                          does not know it */
  struct own_vol *own; /* own.c's ownership state, or NULL */
  /* cowd.live: open (vol) or marked attached; voldb_live keeps it */
  struct vol_entry *live_next, *live_prev;
};

struct cowd
{
  char *run_dir;
  char *state_dir;
  char *config_file;
  char *node_name;
  char *cluster_name;
  char *initiator_name;
  char *chap_user, *chap_password;
  char *fence_command;
  char *metrics_file; /* Prometheus textfile, NULL = none */
  unsigned metrics_interval_ms;
  unsigned nbd_handshake_timeout_ms; /* 0: the NBD server's default */
  bool standalone;
  bool foreground;
  int log_level;
  unsigned reconnect_deadline_ms;
  unsigned quorum_loss_timeout_ms;
  unsigned realtime_priority; /* [cowd] realtime-priority, 0: ordinary */
  unsigned worker_threads;    /* [cowd] worker-threads: offload.c's most */
  struct vol_entry *vols;
  struct vol_entry *live;    /* those open or attached (voldb_live) */
  bool clustered;            /* corosync group joined */
  bool fencing_manual;       /* [cowd] fencing = manual */
  bool fenced_stay;          /* [cowd] after-fence = stay */
  bool fenced;               /* this agent was fenced: until restart */
  const struct own_ops *own; /* standalone or the cluster's */
};

extern struct cowd cowd;

/* config.c: "[section]" / "[section NAME]" / "key = value" files.  The
 * callback gets the section, its optional name, key and value; it
 * returns -1 with a sentence in err to stop. */
typedef int config_fn (void *ud, const char *section, const char *name,
                       const char *key, const char *value, char *err,
                       size_t errlen);
int config_parse (const char *path, config_fn *fn, void *ud, char *err,
                  size_t errlen);
int config_load_daemon (const char *path, char *err, size_t errlen);

/* blackbox.c: libqb's blackbox, written out on a fatal signal and on
 * request (cowctl debug dump) to STATE_DIR; stale /dev/shm rings of dead
 * cowd processes removed at start. */
void blackbox_start (void);
/* Write it now; the file's name goes to path.  0 or -errno. */
int blackbox_dump (char *path, size_t len);

/* voldb.c: the definitions table and its file. */
struct vol_entry *voldb_find (const char *name);
/* Back on the loop after a worker thread opened bk for volume name's
 * attach attach_id (r: the open's result, its sentence in err): *ep is
 * the entry if it is still that attach, not closing (it may have been
 * detached, deleted or attached again meanwhile: else the sentence
 * "volume NAME was detached while WHAT was being opened" and
 * -COW_E_NOT_ATTACHED), and bk is put on the loop (a failure: "volume
 * NAME: CANT" and the backend's sentence).  Returns 0 or the code. */
int voldb_opened (const char *name, uint64_t attach_id, const char *what,
                  const char *cant, struct backend *bk, int r,
                  struct vol_entry **ep, char *err, size_t errlen);
/* A new entry, or NULL (no memory).  key_later: its CoW device is
 * identified (a stat, or the LUN's identity) by the loop's key slices,
 * not now, as are those loaded at start; a lookup by key takes the
 * waiting ones first.  Also later while others wait. */
struct vol_entry *voldb_add (const char *name, const char *base,
                             const char *cow, uint32_t chunk_size,
                             enum dscow_commit commit, bool key_later);
/* ctl-cmds.c: the command table cowd serves on the control channel. */
struct ctl_req;
void cmds_dispatch (struct ctl_req *req);
/* Answers the command files share: a sentence with a code (0: success),
 * the usage line of cmd, or the volume called name (else an answer). */
void reply_fmt (struct ctl_req *req, int code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
void reply_usage (struct ctl_req *req, const char *cmd);
struct vol_entry *find_or_reply (struct ctl_req *req, const char *name);
/* A --rate: a whole number of MB/s; 0 or -1. */
int parse_rate (const char *s, uint32_t *rate);
/* ctl-chain.c: the layer-chain commands. */
void cmd_snapshot (struct ctl_req *req, int argc, char **argv, bool json);
void cmd_snapshots (struct ctl_req *req, int argc, char **argv, bool json);
void cmd_rollback (struct ctl_req *req, int argc, char **argv, bool json);
void cmd_reset (struct ctl_req *req, int argc, char **argv, bool json);
void cmd_merge (struct ctl_req *req, int argc, char **argv, bool json);
/* The sentence for an operation whose drain (vol_hold_op) failed. */
void chain_drain_err (char *err, size_t errlen, const char *name, int res);
/* Hold e's volume for an operation (vol_hold_op: drained runs once it is
 * drained): 0, or the busy answer to req and -1. */
int chain_hold_op (struct ctl_req *req, struct vol_entry *e,
                   vol_done_fn *drained, void *opaque);
struct strbuf;
/* ctl-export.c: export, and its part of status and stats. */
void cmd_export (struct ctl_req *req, int argc, char **argv, bool json);
void export_status_json (struct strbuf *sb, const struct volume *v);
void export_status_text (struct strbuf *sb, const struct volume *v);
/* status: the chain's part (layers, merge progress). */
void chain_status_json (struct strbuf *sb, const struct volume *v);
void chain_status_text (struct strbuf *sb, const struct volume *v);

void voldb_remove (struct vol_entry *e);
/* Room for n definitions in the indexes (before a state transfer's). */
int voldb_reserve (size_t n);
/* Open the store, import an old volumes.conf, load every definition. */
int voldb_load (char *err, size_t errlen);
/* Take the keys of the loaded definitions from the loop now (a clustered
 * cowd waits until it is synced; a lookup takes them at once anyway). */
void voldb_keys_start (void);
/* voldb-import.c: volumes.conf into the store, then renamed *.imported. */
struct store;
int voldb_import (struct store *s, const char *dir, char *err, size_t errlen);
/* Write e's row: durably (returns once it survives a power cut), or
 * lazily (a definition the cluster can give back, the attached flag);
 * remove it.  0 or -1 (logged). */
int voldb_store (struct vol_entry *e);
int voldb_store_lazy (struct vol_entry *e);
/* Writes committed without an fsync (0 or -1), then made durable by
 * voldb_sync_async: done (ud, 0 or an errno) on the loop once the store's
 * log is, after an fdatasync on a thread (offload.c).  The answer to a
 * command waits for done; the loop does not. */
int voldb_store_deferred (struct vol_entry *const *es, unsigned n);
int voldb_unstore_deferred (struct vol_entry *e);
void voldb_sync_async (void (*done) (void *ud, int err), void *ud);
int voldb_unstore (struct vol_entry *e);
/* Put e on cowd.live, or take it off, after e->vol or e->attached changed:
 * the passes that look only at open or attached volumes (after a sync, at
 * a quorum change, at stop) walk that list, not every definition. */
void voldb_live (struct vol_entry *e);
/* Every entry of cowd.live, e; the body may take e itself off the list. */
#define VOLDB_FOR_LIVE(e)                                                      \
  for (struct vol_entry *e = cowd.live, *e##_next = e ? e->live_next : NULL;   \
       e; e = e##_next, e##_next = e ? e->live_next : NULL)
/* Several lazy writes in one transaction (a piece of a table received,
 * a turn of CPG messages). */
int voldb_batch_begin (void);
/* The lazy batch's turn ended: its transaction stays open a little for
 * the next turns (voldb.c, VOLDB_HOLD_MS).  voldb_flush commits whatever
 * is open (at stop). */
void voldb_batch_pause (void);
void voldb_flush (void);
/* The CPU of the longest commit of a batch's transaction, and the most
 * rows one held (at most VOLDB_BATCH_ROWS), since cowd started. */
void voldb_batch_stats (double *max_commit_ms, unsigned *max_rows);
/* No checkpoint of the store while held: a host joining the cluster
 * holds them until it is synced, then the one due runs (own.c). */
void voldb_checkpoints_hold (bool hold);
/* offload.c: work on a thread of its own, then done on the loop (both at
 * once when no thread can be had). */
void cowd_offload (void (*work) (void *data), void (*done) (void *data),
                   void *data);
/* From a work: run fn on the loop's thread, between two of its events,
 * and wait for it (in place when called on the loop). */
void cowd_on_loop (void (*fn) (void *data), void *data);
void cowd_offload_drain (void);
void voldb_backend_opts (struct backend_opts *bo);
/* Open and export (attach) one volume without blocking the loop: the
 * devices open on a thread (an iSCSI login, the superblock's and the
 * bitmap's reads), the rest runs on the loop, then done (opaque, 0 or the
 * code, NULL or the sentence).
 * Returns 1 (done comes later), 0 (open already: done is not called) or a
 * code with its sentence in err (done is not called). */
typedef void voldb_attach_fn (void *opaque, int res, const char *err);
/* While e's devices open (e->opening): done (opaque, ...) runs too when
 * the open ends, with its outcome, after the continuation of the attach
 * that began it and of those that joined before (any of which may have
 * forgotten e: on a failure, done must not touch e).  0, or -ENOMEM. */
int voldb_attach_join (struct vol_entry *e, voldb_attach_fn *done,
                       void *opaque);
/* The refusal of a command on e while its attach opens it: -COW_E_BUSY. */
int voldb_err_opening (const struct vol_entry *e, char *err, size_t errlen);
/* From a thread that opened cow for e (a create's format, an attach): the
 * volume other than e whose CoW device it is, asked on the loop; its name
 * goes to user (DSCOW_NAME_MAX + 1 bytes), NULL when none.  claim: if
 * none, the device's identity is e's at once, in the same step (*claim_err
 * = ENOMEM when it could not be recorded). */
const char *voldb_cow_user_on_loop (struct vol_entry *e,
                                    const struct backend *cow, bool claim,
                                    char *user, int *claim_err);
int voldb_attach_async (struct vol_entry *e, voldb_attach_fn *done,
                        void *opaque, char *err, size_t errlen);
/* Stop and close (detach) one volume. */
void voldb_detach (struct vol_entry *e, vol_done_fn *done, void *opaque);
char *voldb_socket_path (const struct vol_entry *e);
/* Why e's last attach failed (NULL: it did not); `cowctl status` shows it. */
void voldb_set_error (struct vol_entry *e, const char *sentence);
/* A volume attached before a restart cannot be again: log why (stderr in
 * the foreground) and keep it for status. */
void voldb_attach_failed (struct vol_entry *e, const char *sentence);
/* The volume other than `self` whose CoW device is the device `uri` names
 * (backend_key), or NULL. */
const char *voldb_cow_user_uri (const char *self, const char *uri);
/* vol_params.cow_user, ud the name of the volume being opened. */
const char *voldb_cow_user (void *ud, const struct backend *cow);
/* vol_params.defined: is volume name defined (the cluster's table
 * included)? */
bool voldb_defined (void *ud, const char *name);
/* Record the CoW LUN's VPD identity of e (ignored unless ident is one:
 * not a serial number or a digest); indexed for voldb_cow_user. */
int voldb_set_ident (struct vol_entry *e, const char *ident);
/* A path must be absolute (cowd's working directory is no place to look
 * things up): 0, or -1 with a sentence naming volume and path in err. */
int voldb_check_path (const char *vol, const char *what, const char *uri,
                      char *err, size_t errlen);

/* Ownership: how this cowd comes to own the volumes it serves.  Two
 * implementations behind one interface, and the commands go through it:
 *   own-alone.c   standalone: a volume is this host's once it is attached
 *   own.c         cluster mode: the group's table decides (handoffs,
 *                 fencing, the lease), built only with corosync
 * cowd.own is own_alone_ops until own_start joins a cluster. */
typedef void own_wait_fn (void *opaque, int res, const char *err);
struct own_facts /* a volume as the cluster's table has it */
{
  const char *state; /* unowned, owned, handing-off, fencing */
  uint32_t owner, requester, fenced_node, local;
  uint64_t epoch;
  bool bouncing, exclusive;
};
struct own_ops
{
  /* Open e and serve it (incoming: the destination of a live migration,
   * even from a live owner).  Its devices open on a thread: 1, and
   * done (opaque, 0 or -COW_E_*, NULL or the sentence) later, on the loop;
   * 0: open already; or -COW_E_* with a sentence in err (no done). */
  int (*attach) (struct vol_entry *e, bool incoming, voldb_attach_fn *done,
                 void *opaque, char *err, size_t errlen);
  /* Stop serving e, commit, and let go of it; done(opaque, res). */
  void (*detach) (struct vol_entry *e, vol_done_fn *done, void *opaque);
  /* Definitions were created here (n of them, n >= 1): tell whoever must
   * know, in as few messages as they fit. */
  void (*defined) (struct vol_entry *const *e, size_t n);
  /* done(opaque, 0, NULL) once this node owns and serves e (at once if it
   * does), or done(opaque, -COW_E_*, sentence) when it cannot within
   * timeout_s (detached, fenced, the takeover failed, the time ran out).
   * 0, or -ENOMEM (done is not called).  NULL: attached is served. */
  int (*wait_owned) (struct vol_entry *e, unsigned timeout_s, own_wait_fn *done,
                     void *opaque);
  /* e's entry in the cluster's table into f; false when there is none. */
  bool (*facts) (const struct vol_entry *e, struct own_facts *f);
  /* The hooks of a volume's backends (fencing's), and a volume just
   * opened (registered for fencing; not served until the table says). */
  void (*backend_opts) (struct backend_opts *bo);
  void (*opened) (struct vol_entry *e);
  /* delete: forget e everywhere (0), or a COW_E_* code with a sentence
   * (e stays).  NULL: only here. */
  int (*undefine) (struct vol_entry *e, char *err, size_t errlen);
  /* The hooks of the session that formats a CoW device (create): it
   * registers this node's key, so that a reservation left on the device
   * by a deleted volume's nodes does not refuse the format.  NULL: none. */
  void (*format_opts) (struct backend_opts *bo);
};
extern const struct own_ops own_alone_ops;
/* Join cluster cowd.cluster_name (cowd.own becomes the cluster's); leave
 * it.  own_start returns -1 with a sentence (a cowd built without
 * corosync says so). */
int own_start (char *err, size_t errlen);
void own_stop (void);

/* own.c: cowd's side of the cluster (see own_ops above). */
/* Start the request-to-served clock (a migrate asked on the target). */
void own_note_request (struct vol_entry *e);
/* This node was fenced: fail every wait of own_ops.wait_owned. */
void own_wake_fenced (void);
/* This node serves e under no epoch any more (it was fenced). */
void own_forget_epoch (struct vol_entry *e);
/* Handoff timing samples (ms) for `cowctl handoff-times` and
 * tests/bench/handoff: on the new owner, from asking to serving
 * (served); on the old owner, from holding requests to sending HANDOFF
 * (held).  The first 1024 of each since cowd started. */
struct own_times
{
  const double *served, *held;
  unsigned nserved, nheld;
};
struct own_times own_handoff_times (void);

/* ctl-cluster.c (with corosync; own-none.c has none): the cluster's
 * commands, looked up after the table of ctl-cmds.c. */
struct cmd
{
  const char *name; /* as in ctl_commands (ctl-usage.c) */
  void (*fn) (struct ctl_req *req, int argc, char **argv, bool json);
};
extern const struct cmd *const cluster_cmds;
extern const size_t cluster_ncmds;
/* ctl-cmds.c: a node id as "3" or "n3": 0, or -1. */
int parse_node (const char *s, uint32_t *node);

/* probe.c: the loop's longest gap between two turns, an upper bound of
 * its longest block (ms); the most CPU it used between two turns (ms);
 * how many gaps passed 10 ms. */
void probe_start (void);
void probe_get (double *max_gap_ms, double *max_busy_ms, uint64_t *slow);
/* When main began (cowd.c, first thing). */
void probe_mark_start (void);
/* Keep the maxima as they are now (own.c, when synced), and the time
 * since main began (ms), and read them; after_ms is 0 before a sync. */
void probe_mark_synced (void);
void probe_synced (double *gap_ms, double *busy_ms, double *after_ms);
/* The longest gap less what the loop's thread waited for a CPU in its
 * interval (the least of it that was the loop's own), over the whole run
 * and when last synced. */
void probe_own (double *max_own_ms, double *sync_own_ms);
/* What the watcher saw the loop's thread do in the longest gap over 10
 * ms ("in fdatasync on fd 12 (/x) ..."), or "". */
const char *probe_max_gap_in (void);
/* Stop the watcher thread (at the end of main). */
void probe_stop (void);
/* Put the loop's thread (the caller) in SCHED_RR at
 * cowd.realtime_priority, the threads it starts from then on staying
 * ordinary; a warning when the kernel refuses.  The priority it has now,
 * 0 when ordinary. */
void probe_realtime_start (void);
int probe_realtime_priority (void);

/* metrics.c: the Prometheus textfile, rewritten every interval. */
void metrics_start (void);

/* fencing.c: SCSI-3 registration on our sessions, fencing others from a
 * worker thread, and stopping when we are fenced ourselves. */
struct strbuf;
int fencing_start (char *err, size_t errlen);
void fencing_backend_opts (struct backend_opts *bo);
void fencing_format_opts (struct backend_opts *bo);
void fencing_attach_blockdev (struct backend *bk);
void fencing_kick (void);
void fencing_self (const char *why);
void fencing_on_fenced (uint32_t node, uint32_t by, bool storage);
void fencing_on_synced (void);
void fencing_on_standing (void);
void fencing_forget_registrations (void);
void fencing_forget_lun (const char *uri);
void fencing_manual (uint32_t node, struct ctl_req *req);
void fencing_status (struct strbuf *sb, bool json);
int fencing_probe (struct vol_entry *e, char *out, size_t outlen);

/* notify.c: readiness for the service manager (sd_notify; no-ops without
 * libsystemd or outside systemd).  READY=1 goes out once both parts are
 * done: the control channel serves, and the volumes attached before the
 * last stop are attached again (in a cluster: once the table arrived). */
enum notify_part
{
  NOTIFY_CONTROL = 1,
  NOTIFY_VOLUMES = 2,
};
void notify_ready_part (enum notify_part part);
void notify_status (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));
void notify_stopping (void);

#endif
