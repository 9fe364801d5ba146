/* SPDX-License-Identifier: GPL-2.0-or-later */
/* voldb.c: the table of volume definitions this agent knows, persisted
 * one row per volume in STATE_DIR/volumes.db (store.c: SQLite, WAL), so
 * that definitions, and which volumes are attached, survive a restart of
 * cowd.  Every change writes its one row (voldb_store: durable, for what
 * an operator is answered about; voldb_store_lazy: for what the cluster
 * can give back and the attached mark), never the whole table; a state
 * transfer's definitions go in one transaction per batch
 * (voldb_batch_begin/end).  An old volumes.conf is imported at start
 * (voldb-import.c).
 *
 * In memory: cowd.vols, sorted by name (list output is stable), is level
 * 0 of a skip list, so adding or removing an entry costs O(log N); hash
 * indexes (common/strmap.h) find an entry by name, by CoW device identity
 * (backend_key, computed when the entry is added, or for the definitions
 * loaded at start from the loop afterwards: voldb_key_slice) and as
 * named, and by the CoW LUN's VPD identity recorded with the definition
 * (cow_ident: create records it, the cluster's table carries it, attach
 * fills it in for an older definition): every lookup is O(1), so a
 * definition costs the same with 100,000 volumes as with one.
 *
 * A CoW device belongs to one definition: create and attach refuse a
 * device another volume names, however it is named (backend_key: the
 * device and inode of a file, the device number of a block device, the
 * normalised URL of a LUN; and a LUN's VPD identity), and create refuses
 * a device whose superblock names a defined volume (voldb_defined).
 * Paths are absolute.
 *
 * Attach opens the volume and starts its NBD export on
 * RUN_DIR/NAME.sock.  The socket path depends only on the run directory
 * and the name, so after a restart clients reconnect to the same path.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowlog.h"

#include "clock.h"
#include "cowd.h"
#include "loop.h"
#include "nbd-server.h"
#include "store.h"
#include "strmap.h"

/* The CPU time of the loop that one slice of taking keys may use. */
#define VOLDB_KEY_SLICE_NS 2000000ull

/* --- the indexes --- */

static const char *
voldb_name_of (const void *item, const void *ctx)
{
  return ((const struct vol_entry *) item)->name;
}

static const char *
voldb_key_of (const void *item, const void *ctx)
{
  return ((const struct vol_entry *) item)->cow_key;
}

static const char *
voldb_cow_of (const void *item, const void *ctx)
{
  return ((const struct vol_entry *) item)->cow;
}

static const char *
voldb_ident_of (const void *item, const void *ctx)
{
  return ((const struct vol_entry *) item)->cow_ident;
}

static struct
{
  struct strmap by_name, by_key, by_ident;
  struct strmap by_cow;                 /* the CoW device as named */
  struct vol_entry *head[VOLDB_LEVELS]; /* [0] unused: cowd.vols */
  struct vol_entry *tail[VOLDB_LEVELS]; /* the last of each level */
  struct vol_entry **unres;             /* entries whose key is "path:" */
  size_t unresolved, unres_cap;
  struct vol_entry **pend; /* entries without a key, as added; NULL: gone */
  size_t pend_first, pend_n, pend_cap; /* pend[pend_first..pend_n) */
  size_t pending;                      /* how many of those are not NULL */
  bool no_slices;                      /* COWD_TEST_NO_KEY_SLICES */
  bool keys_later;                     /* until voldb_keys_start */
  struct cowd_timer slice;             /* the next voldb_key_slice */
  uint64_t slice_ns, slice_keys;       /* what the slices did */
  unsigned slices;
  uint32_t rand;
  struct store *store;
  struct cowd_timer checkpoint; /* the store's log is due one */
  bool ck_hold;                 /* voldb_checkpoints_hold */
  bool lazy_batch; /* voldb_batch_begin: a transaction from the first write */
  unsigned batch_max_rows;      /* the most rows a batch's commit held */
  uint64_t batch_max_commit_ns; /* and the longest such commit took */
  struct cowd_timer hold;       /* the end of a paused batch's transaction */
  struct vol_entry *live_tail;  /* the last of cowd.live */
} V = {
  .by_name = { .key = voldb_name_of },
  .by_key = { .key = voldb_key_of },
  .by_ident = { .key = voldb_ident_of },
  .by_cow = { .key = voldb_cow_of },
  .rand = 2463534242u,
};

struct vol_entry *
voldb_find (const char *name)
{
  return strmap_get (&V.by_name, name);
}

int
voldb_opened (const char *name, uint64_t attach_id, const char *what,
              const char *cant, struct backend *bk, int r,
              struct vol_entry **ep, char *err, size_t errlen)
{
  char e2[COW_ERRLEN - 256];
  struct vol_entry *e = voldb_find (name);
  *ep = e && e->vol && !e->closing && e->attach_id == attach_id ? e : NULL;
  if (!*ep)
    {
      snprintf (err, errlen, "volume %s was detached while %s was being opened",
                name, what);
      return -COW_E_NOT_ATTACHED;
    }
  if (r == 0 && (r = backend_start_loop (bk, e2, sizeof e2)) < 0)
    snprintf (err, errlen, "volume %s: %s%s", name, cant, e2);
  return r;
}

/* The skip list: level 0 is the sorted list cowd.vols (e->next); an entry
 * of level L also sits on the lists 1..L-1 through e->up[]. */
static struct vol_entry **
voldb_link (struct vol_entry *x, unsigned lvl)
{
  if (!x)
    return lvl ? &V.head[lvl] : &cowd.vols;
  return lvl ? &x->up[lvl - 1] : &x->next;
}

/* The last entry before name on every level. */
static void
voldb_preds (const char *name, struct vol_entry **pred)
{
  /* Definitions are loaded in name order: one that sorts after the last
   * entry follows the last of every level, without a search from the
   * head (its string comparisons: 20-30 ms of a load of 100,000). */
  if (V.tail[0] && strcmp (V.tail[0]->name, name) < 0)
    {
      memcpy (pred, V.tail, sizeof V.tail);
      return;
    }
  struct vol_entry *x = NULL;
  for (int lvl = VOLDB_LEVELS - 1; lvl >= 0; lvl--)
    {
      struct vol_entry *n;
      while ((n = *voldb_link (x, (unsigned) lvl))
             && strcmp (n->name, name) < 0)
        x = n;
      pred[lvl] = x;
    }
}

/* A level with probability 4^-(L-1) (xorshift32). */
static unsigned
voldb_level (void)
{
  unsigned lvl = 1;
  V.rand ^= V.rand << 13;
  V.rand ^= V.rand >> 17;
  V.rand ^= V.rand << 5;
  for (uint32_t r = V.rand; (r & 3) == 0 && lvl < VOLDB_LEVELS; r >>= 2)
    lvl++;
  return lvl;
}

/* e->levels and e->up are set (voldb_add). */
static void
voldb_list_insert (struct vol_entry *e)
{
  struct vol_entry *pred[VOLDB_LEVELS];
  voldb_preds (e->name, pred);
  for (unsigned l = 0; l < e->levels; l++)
    {
      *voldb_link (e, l) = *voldb_link (pred[l], l);
      *voldb_link (pred[l], l) = e;
      if (!*voldb_link (e, l))
        V.tail[l] = e;
    }
}

static void
voldb_list_remove (struct vol_entry *e)
{
  struct vol_entry *pred[VOLDB_LEVELS];
  voldb_preds (e->name, pred);
  for (unsigned l = 0; l < e->levels; l++)
    if (*voldb_link (pred[l], l) == e)
      {
        *voldb_link (pred[l], l) = *voldb_link (e, l);
        if (V.tail[l] == e)
          V.tail[l] = pred[l];
      }
}

/* Only the entry a map names under key leaves it (two definitions of
 * one device from the cluster: the first keeps the index). */
static void
voldb_unindex (struct strmap *m, const char *key, struct vol_entry *e)
{
  if (key && strmap_get (m, key) == e)
    strmap_del (m, key);
}

static int
voldb_index (struct strmap *m, const char *key, struct vol_entry *e)
{
  return !key[0] || strmap_get (m, key) ? 0 : strmap_put (m, e);
}

static void voldb_key_slice (void *data);

/* Room for one more in an array of entries: 0 or -1. */
static int
voldb_room (struct vol_entry ***a, size_t n, size_t *cap)
{
  if (n < *cap)
    return 0;
  size_t c = *cap ? 2 * *cap : 16;
  struct vol_entry **p = realloc (*a, c * sizeof *p);
  if (!p)
    return -1;
  *a = p;
  *cap = c;
  return 0;
}

/* Entries whose device was absent when they took their key: each knows
 * its place, so that it leaves in O(1) (the last takes its place). */
static void
voldb_unres_del (struct vol_entry *e)
{
  if (!e->unres_at)
    return;
  struct vol_entry *last = V.unres[--V.unresolved];
  V.unres[e->unres_at - 1] = last;
  last->unres_at = e->unres_at;
  e->unres_at = 0;
}

/* Entries without a key yet, in the order they were added, which is the
 * order they take their keys: of two definitions of one device, the one
 * added first keeps the index, as when each took its key when added.  A
 * removed entry leaves a hole, so the order stays and removal is O(1). */
static int
voldb_pend (struct vol_entry *e)
{
  if (V.pend_n == V.pend_cap && V.pending <= V.pend_cap / 2)
    {
      /* Close the holes instead of growing (at least half is free). */
      size_t n = 0;
      for (size_t i = V.pend_first; i < V.pend_n; i++)
        if (V.pend[i])
          {
            V.pend[n] = V.pend[i];
            V.pend[n]->pend_at = n + 1;
            n++;
          }
      V.pend_first = 0;
      V.pend_n = n;
    }
  if (voldb_room (&V.pend, V.pend_n, &V.pend_cap) < 0)
    return -1;
  V.pend[V.pend_n++] = e;
  e->pend_at = V.pend_n;
  V.pending++;
  if (!V.no_slices && !V.keys_later)
    cowd_timer_arm (&V.slice, 0, voldb_key_slice, NULL);
  return 0;
}

static void
voldb_unpend (struct vol_entry *e)
{
  if (!e->pend_at)
    return;
  V.pend[e->pend_at - 1] = NULL;
  e->pend_at = 0;
  if (--V.pending == 0)
    V.pend_first = V.pend_n = 0;
}

static void
voldb_unkey (struct vol_entry *e)
{
  voldb_unindex (&V.by_key, e->cow_key, e);
  voldb_unres_del (e);
  voldb_unpend (e);
}

/* The CoW device's identity as this host sees it now (backend_key). */
static int
voldb_set_key (struct vol_entry *e)
{
  char k[sizeof ((struct backend *) 0)->key];
  backend_key (e->cow, k, sizeof k);
  if (e->cow_key && strcmp (e->cow_key, k) == 0)
    return 0;
  voldb_unkey (e);
  free (e->cow_key);
  if (!(e->cow_key = strdup (k)))
    return -1;
  if (strncmp (k, "path:", 5) == 0)
    {
      if (voldb_room (&V.unres, V.unresolved, &V.unres_cap) < 0)
        return -1;
      V.unres[V.unresolved++] = e;
      e->unres_at = V.unresolved;
    }
  return e->cow[0] ? voldb_index (&V.by_key, k, e) : 0;
}

/* The key of the entry that has waited longest for one (there is one). */
static void
voldb_key_next (void)
{
  while (!V.pend[V.pend_first])
    V.pend_first++;
  struct vol_entry *e = V.pend[V.pend_first];
  /* Off the list first, so that a failure cannot leave it there. */
  voldb_unpend (e);
  if (voldb_set_key (e) < 0)
    qb_log (LOG_ERR,
            "cowd: %s: no memory for its CoW device's key: a definition of "
            "that device under another name would not be refused",
            e->name);
}

/* Every entry has its key: what a lookup of by_key needs first. */
static void
voldb_keys_settle (void)
{
  while (V.pending)
    voldb_key_next ();
}

/* The keys of the definitions loaded at start (a stat of each CoW device,
 * a string and an index entry: with 100,000 definitions, more than half
 * of the 0.8 s of CPU the load took) are taken from the loop afterwards,
 * VOLDB_KEY_SLICE_NS of its CPU at a time (less once I/O waits:
 * cowd_io_waiting), so that cowd serves and joins its cluster without
 * waiting for them; a lookup before they are all
 * taken takes the rest itself first (voldb_keys_settle). */
static void
voldb_key_slice (void *data)
{
  uint64_t t0 = clock_thread_cpu_ns (), t;
  unsigned n = 0;
  /* The thread's clock is a system call: read after every 32 stats.  The
   * I/O is looked at after each (cowd_io_waiting is cheap); after every
   * 32 too, the 32 definitions of a creating host's DEFINE_MANY took
   * their keys in one stretch on every other host (bench/scale 10,000). */
  while (V.pending)
    {
      voldb_key_next ();
      n++;
      if (V.pending
          && (cowd_io_waiting ()
              || (n % 32 == 0
                  && clock_thread_cpu_ns () - t0 >= VOLDB_KEY_SLICE_NS)))
        break;
    }
  t = clock_thread_cpu_ns ();
  V.slice_ns += t - t0;
  V.slice_keys += n;
  V.slices++;
  if (V.pending)
    cowd_timer_arm (&V.slice, 0, voldb_key_slice, NULL);
  else if (V.slice_keys)
    {
      /* The first are the store's, at start; later ones the cluster's
       * definitions, a message's at a time: not worth a line each. */
      static bool told;
      qb_log (told ? LOG_DEBUG : LOG_INFO,
              "cowd: the CoW devices of %" PRIu64 " definitions identified "
              "from the loop in %u slices (%.1f ms of CPU)",
              V.slice_keys, V.slices, (double) V.slice_ns / 1e6);
      told = true;
      V.slice_keys = V.slice_ns = 0;
      V.slices = 0;
    }
}

void
voldb_keys_start (void)
{
  V.keys_later = false;
  if (V.pending && !V.no_slices)
    cowd_timer_arm (&V.slice, 0, voldb_key_slice, NULL);
}

/* e->up, e->name and e->cow are in e's own allocation (voldb_add). */
static void
voldb_free (struct vol_entry *e)
{
  free (e->base);
  free (e->cow_key);
  free (e->cow_ident);
  free (e->own);
  free (e->error);
  free (e);
}

int
voldb_reserve (size_t n)
{
  return strmap_reserve (&V.by_name, n) < 0 || strmap_reserve (&V.by_key, n) < 0
                 || strmap_reserve (&V.by_cow, n) < 0
                 || strmap_reserve (&V.by_ident, n) < 0
             ? -1
             : 0;
}

struct vol_entry *
voldb_add (const char *name, const char *base, const char *cow,
           uint32_t chunk_size, enum dscow_commit commit, bool key_later)
{
  /* One allocation for the entry, its skip list links, its name and its
   * CoW device, which never change: fewer allocations and fewer pages
   * touched (20-30 ms of a load of 100,000 definitions). */
  unsigned levels = voldb_level ();
  size_t up = (levels - 1) * sizeof (struct vol_entry *);
  size_t ln = strlen (name) + 1, lc = strlen (cow) + 1;
  struct vol_entry *e = calloc (1, sizeof *e + up + ln + lc);
  if (!e)
    return NULL;
  e->levels = (uint8_t) levels;
  e->up = levels > 1 ? (struct vol_entry **) (e + 1) : NULL;
  e->name = memcpy ((char *) (e + 1) + up, name, ln);
  e->cow = memcpy (e->name + ln, cow, lc);
  e->chunk_size = chunk_size;
  e->commit = commit;
  if (!(e->base = strdup (base)))
    {
      voldb_free (e);
      return NULL;
    }
  voldb_list_insert (e);
  /* While some wait for their keys, a new one waits behind them. */
  if (strmap_put (&V.by_name, e) < 0 || voldb_index (&V.by_cow, cow, e) < 0
      || (key_later || V.pending ? voldb_pend (e) : voldb_set_key (e)) < 0)
    {
      voldb_remove (e);
      return NULL;
    }
  return e;
}

/* cowd.live: with 100,000 definitions, each pass over all of them after
 * a sync took 3-5 ms of the loop (bench/scale-join), for the few that are
 * open or attached. */
static bool
voldb_is_live (const struct vol_entry *e)
{
  return e->live_prev || cowd.live == e;
}

static void
voldb_live_unlink (struct vol_entry *e)
{
  if (!voldb_is_live (e))
    return;
  if (e->live_prev)
    e->live_prev->live_next = e->live_next;
  else
    cowd.live = e->live_next;
  if (e->live_next)
    e->live_next->live_prev = e->live_prev;
  else
    V.live_tail = e->live_prev;
  e->live_next = e->live_prev = NULL;
}

void
voldb_live (struct vol_entry *e)
{
  if (!e->vol && !e->attached)
    voldb_live_unlink (e);
  else if (!voldb_is_live (e))
    {
      /* at the end: loaded in name order, attached in name order */
      e->live_next = NULL;
      e->live_prev = V.live_tail;
      if (V.live_tail)
        V.live_tail->live_next = e;
      else
        cowd.live = e;
      V.live_tail = e;
    }
}

void
voldb_remove (struct vol_entry *e)
{
  voldb_live_unlink (e);
  voldb_unindex (&V.by_name, e->name, e);
  voldb_unindex (&V.by_cow, e->cow, e);
  voldb_unindex (&V.by_ident, e->cow_ident, e);
  voldb_unkey (e);
  voldb_list_remove (e);
  voldb_free (e);
}

void
voldb_set_error (struct vol_entry *e, const char *sentence)
{
  free (e->error);
  e->error = sentence ? strdup (sentence) : NULL;
}

void
voldb_attach_failed (struct vol_entry *e, const char *sentence)
{
  qb_log (LOG_ERR, "cowd: %s: not re-attached at start: %s", e->name, sentence);
  voldb_set_error (e, sentence);
}

int
voldb_check_path (const char *vol, const char *what, const char *uri, char *err,
                  size_t errlen)
{
  if (uri[0] == '/' || strstr (uri, "://"))
    return 0;
  snprintf (err, errlen,
            "volume %s: %s path '%s' is relative; cowd needs an "
            "absolute path (cowctl makes the paths it is given absolute)",
            vol, what, uri);
  return -1;
}

/* A LUN's VPD identity names it however it is reached (two portals or
 * names of one LUN); a serial number or a digest may not be unique. */
static bool
voldb_ident_vpd (const char *ident)
{
  return ident && ident[0] && strncmp (ident, "serial.", 7) != 0
         && strncmp (ident, "digest:", 7) != 0;
}

int
voldb_set_ident (struct vol_entry *e, const char *ident)
{
  if (!voldb_ident_vpd (ident)
      || (e->cow_ident && strcmp (e->cow_ident, ident) == 0))
    return 0;
  char *s = strdup (ident);
  if (!s)
    return -1;
  voldb_unindex (&V.by_ident, e->cow_ident, e);
  free (e->cow_ident);
  e->cow_ident = s;
  return voldb_index (&V.by_ident, s, e);
}

/* Definitions whose device was absent when they were added (defined on
 * another host, the device not yet visible here) are looked at again:
 * the device may exist now.  A scan, but only while some are absent. */
static void
voldb_resolve (void)
{
  /* Only the entries whose device was absent (a list of its own: with
   * 100,000 volumes and one missing file, a walk of them all per lookup
   * made every create cost O(N)).  voldb_set_key may take e off the list:
   * walk it from the end. */
  for (size_t i = V.unresolved; i-- > 0;)
    if (i < V.unresolved)
      voldb_set_key (V.unres[i]);
}

static const char *
voldb_other (const struct vol_entry *e, const char *self)
{
  return e && strcmp (e->name, self) != 0 ? e->name : NULL;
}

/* The volume other than self whose CoW device is the device of key, or
 * the LUN of VPD identity ident, or is named cow: three index lookups. */
static const char *
voldb_cow_user_key (const char *self, const char *key, const char *ident,
                    const char *cow)
{
  const char *u;
  voldb_keys_settle ();
  voldb_resolve ();
  struct vol_entry *k = strmap_get (&V.by_key, key);
  if (k && !k->vol)
    {
      /* Not open here: its file may be gone since and the inode reused by
       * another (the key is the device and inode): look again. */
      voldb_set_key (k);
      k = strmap_get (&V.by_key, key);
    }
  if ((u = voldb_other (k, self)))
    return u;
  if (voldb_ident_vpd (ident)
      && (u = voldb_other (strmap_get (&V.by_ident, ident), self)))
    return u;
  return cow ? voldb_other (strmap_get (&V.by_cow, cow), self) : NULL;
}

const char *
voldb_cow_user_uri (const char *self, const char *uri)
{
  char key[sizeof ((struct backend *) 0)->key];
  backend_key (uri, key, sizeof key);
  return voldb_cow_user_key (self, key, NULL, uri);
}

/* vol_params.cow_user: the opened device, which for a LUN also has its
 * VPD identity (two portals or names of one LUN). */
const char *
voldb_cow_user (void *ud, const struct backend *cow)
{
  return voldb_cow_user_key (ud, cow->key, cow->ident, NULL);
}

bool
voldb_defined (void *ud, const char *name)
{
  (void) ud;
  return voldb_find (name) != NULL;
}

char *
voldb_socket_path (const struct vol_entry *e)
{
  char *p;
  if (asprintf (&p, "%s/%s.sock", cowd.run_dir, e->name) < 0)
    return NULL;
  return p;
}

void
voldb_backend_opts (struct backend_opts *bo)
{
  *bo = (struct backend_opts){
    .direct = true,
    .initiator_name = cowd.initiator_name,
    .chap_user = cowd.chap_user,
    .chap_password = cowd.chap_password,
    .reconnect_deadline_ms = cowd.reconnect_deadline_ms,
  };
}

/* --- the store --- */

static struct store_def
voldb_def (const struct vol_entry *e)
{
  return (struct store_def){ .name = e->name,
                             .base = e->base,
                             .cow = e->cow,
                             .cow_ident = e->cow_ident ? e->cow_ident : "",
                             .commit = vol_commit_name (e->commit),
                             .chunk_size = e->chunk_size,
                             .exclusive = e->exclusive,
                             .buffered = e->buffered,
                             .attached = e->attached };
}

static int voldb_stored (int r);

/* Held while this host joins: a checkpoint's thread, its connection and
 * its fsyncs then compete with the state transfer for this machine's
 * two cores and for the process's memory map (bench/scale-join 100,000,
 * six runs each way, interleaved: the empty host's longest gap had a
 * median of 267 ms with checkpoints during the join, 148 ms with them on
 * the loop).  The log grows meanwhile; nothing waits for it. */
static void
voldb_checkpoint (void *data)
{
  (void) data;
  if (!V.ck_hold)
    store_checkpoint_start (V.store);
}

void
voldb_checkpoints_hold (bool hold)
{
  V.ck_hold = hold;
  if (!hold)
    voldb_stored (0);
}

/* After a store operation that may have committed: a checkpoint that is
 * due runs from a loop step of its own, after the loop has polled
 * (store.h). */
static int
voldb_stored (int r)
{
  if (store_checkpoint_due (V.store))
    cowd_timer_arm (&V.checkpoint, 1000000ull, voldb_checkpoint, NULL);
  return r;
}

/* A batch's transaction is committed once it holds VOLDB_BATCH_ROWS
 * rows, from the write that made it so, within the step of the loop that
 * wrote them: a commit writes every page its rows changed into the log, on
 * the loop.  Held for VOLDB_HOLD_MS, the rows of a state transfer at
 * 100,000 volumes (about 10,000 of them) took 3.3 ms to commit, the first
 * 7-13 ms as the log file grew, and the joiner's loop went 12.9 ms without
 * turning, 12.7 of them its own, on a CPU of its own (bench/scale-join,
 * LAB_CPUS); 1000 rows take 0.2-0.6 ms, the first 1.7 ms. */
#define VOLDB_BATCH_ROWS 1000

/* Commit the lazy transaction open; 0 or -1.  Counts its rows and CPU
 * for voldb_batch_stats. */
static int
voldb_batch_commit (void)
{
  unsigned rows = store_txn_rows (V.store);
  uint64_t t0 = clock_thread_cpu_ns ();
  int r = store_commit (V.store);
  uint64_t t = clock_thread_cpu_ns () - t0;
  if (t > V.batch_max_commit_ns)
    V.batch_max_commit_ns = t;
  if (rows > V.batch_max_rows)
    V.batch_max_rows = rows;
  return voldb_stored (r);
}

void
voldb_batch_stats (double *max_commit_ms, unsigned *max_rows)
{
  *max_commit_ms = (double) V.batch_max_commit_ns / 1e6;
  *max_rows = V.batch_max_rows;
}

/* Before a durable write: a lazy batch open around it (an undefine from
 * the cluster in a turn of CPG messages) is committed first, so the write
 * runs in a transaction of its own, neither waiting for the batch nor left
 * lazy with it; the batch's next write begins another.  0 or -1. */
static int
voldb_end_lazy (void)
{
  return store_in_lazy (V.store) ? voldb_batch_commit () : 0;
}

int
voldb_store (struct vol_entry *e)
{
  struct store_def d = voldb_def (e);
  if (voldb_end_lazy () < 0)
    return -1;
  return voldb_stored (store_put (V.store, &d));
}

/* One transaction of the rows of es[0..n) written (or, del, deleted),
 * committed without an fsync: the caller makes it durable with
 * voldb_sync_async, off the loop, and answers only after that.  0 or -1
 * (then none of them is written). */
static int
voldb_write_deferred (struct vol_entry *const *es, unsigned n, bool del)
{
  if (voldb_end_lazy () < 0 || store_begin (V.store, STORE_LAZY) < 0)
    return -1;
  for (unsigned i = 0; i < n; i++)
    {
      struct store_def d = voldb_def (es[i]);
      if ((del ? store_delete (V.store, es[i]->name) : store_put (V.store, &d))
          < 0)
        {
          store_rollback (V.store);
          return -1;
        }
    }
  return voldb_stored (store_commit (V.store));
}

int
voldb_store_deferred (struct vol_entry *const *es, unsigned n)
{
  return voldb_write_deferred (es, n, false);
}

int
voldb_unstore_deferred (struct vol_entry *e)
{
  return voldb_write_deferred (&e, 1, true);
}

/* voldb_sync_async is a group commit: one fdatasync of the log covers
 * every commit before it began, so the callers that come while one runs
 * wait together for the next, and N deletions received in one turn cost
 * one or two fdatasyncs, not N threads each with its own. */
struct voldb_waiter
{
  void (*done) (void *ud, int err);
  void *ud;
  struct voldb_waiter *next;
};

static struct
{
  struct voldb_waiter *head, **tail; /* for the next fdatasync */
  bool running;
} VS = { NULL, &VS.head, false };

struct voldb_sync
{
  struct voldb_waiter *waiters; /* those this fdatasync answers */
  int fd, err;
};

static void voldb_sync_start (void);

static void
voldb_sync_work (void *data)
{
  struct voldb_sync *s = data;
  if (fdatasync (s->fd) < 0)
    s->err = errno;
}

/* Answer the waiters w (each may wait for the next fdatasync). */
static void
voldb_waiters_answer (struct voldb_waiter *w, int err)
{
  for (struct voldb_waiter *next; w; w = next)
    {
      next = w->next;
      w->done (w->ud, err);
      free (w);
    }
}

static void
voldb_sync_done (void *data)
{
  struct voldb_sync *s = data;
  voldb_waiters_answer (s->waiters, s->err);
  free (s);
  VS.running = false;
  if (VS.head)
    voldb_sync_start ();
}

static void
voldb_sync_start (void)
{
  struct voldb_sync *s = malloc (sizeof *s);
  int fd = store_log_fd (V.store), err = s ? (fd < 0 ? errno : 0) : ENOMEM;
  struct voldb_waiter *w = VS.head;
  VS.head = NULL;
  VS.tail = &VS.head;
  if (err)
    {
      free (s);
      return voldb_waiters_answer (w, err);
    }
  *s = (struct voldb_sync){ w, fd, 0 };
  VS.running = true;
  cowd_offload (voldb_sync_work, voldb_sync_done, s);
}

void
voldb_sync_async (void (*done) (void *ud, int err), void *ud)
{
  struct voldb_waiter *w = malloc (sizeof *w);
  if (!w)
    return done (ud, ENOMEM);
  *w = (struct voldb_waiter){ done, ud, NULL };
  *VS.tail = w;
  VS.tail = &w->next;
  if (!VS.running)
    voldb_sync_start ();
}

int
voldb_store_lazy (struct vol_entry *e)
{
  struct store_def d = voldb_def (e);
  /* A batch's transaction begins here, at its first write: most turns of
   * CPG messages store nothing (the creating host gets each of its own
   * definitions back), and an empty transaction is still a BEGIN, a
   * COMMIT and two PRAGMAs. */
  if (V.lazy_batch && !store_in_lazy (V.store))
    store_begin (V.store, STORE_LAZY); /* else its own transaction */
  int r = voldb_stored (store_put_lazy (V.store, &d));
  /* the batch's next write begins another */
  if (store_in_lazy (V.store) && store_txn_rows (V.store) >= VOLDB_BATCH_ROWS
      && voldb_batch_commit () < 0)
    r = -1;
  return r;
}

int
voldb_unstore (struct vol_entry *e)
{
  if (voldb_end_lazy () < 0)
    return -1;
  return voldb_stored (store_delete (V.store, e->name));
}

int
voldb_batch_begin (void)
{
  V.lazy_batch = true;
  return 0;
}

/* A lazy batch paused (its turn of the loop ended: early for I/O, or with
 * no more messages) keeps its transaction open for the next turns, for at
 * most VOLDB_HOLD_MS from the first pause: committed at every yield, a
 * turn of CPG messages that ended after one or two definitions for an
 * NBD read wrote 30% more log than whole turns (bench/scale 10,000, host
 * 2 read every 2 ms), and committed at each end, each DEFINE_MANY of a
 * creating host cost a commit.  A durable write or a slice of create
 * --from commits it sooner; a crash of cowd loses what it holds, which
 * the cluster gives back (a lazy write's promise). */
#define VOLDB_HOLD_MS 50

static void
voldb_hold_end (void *data)
{
  (void) data;
  if (!V.lazy_batch && store_in_lazy (V.store))
    voldb_batch_commit ();
}

void
voldb_batch_pause (void)
{
  V.lazy_batch = false;
  if (store_in_lazy (V.store))
    cowd_timer_arm (&V.hold, (uint64_t) VOLDB_HOLD_MS * 1000000ull,
                    voldb_hold_end, NULL);
}

void
voldb_flush (void)
{
  V.lazy_batch = false;
  voldb_hold_end (NULL);
  cowd_timer_stop (&V.hold);
}

static int
voldb_row (void *ud, const struct store_def *d)
{
  enum dscow_commit c = DSCOW_COMMIT_SYNC;
  vol_commit_parse (d->commit, &c);
  struct vol_entry *e
      = voldb_add (d->name, d->base, d->cow, d->chunk_size, c, true);
  if (!e)
    return -1;
  e->exclusive = d->exclusive;
  e->buffered = d->buffered;
  e->attached = d->attached;
  voldb_live (e);
  return voldb_set_ident (e, d->cow_ident);
}

int
voldb_load (char *err, size_t errlen)
{
  if (store_open (cowd.state_dir, &V.store, err, errlen) < 0)
    return -1;
  if (voldb_import (V.store, cowd.state_dir, err, errlen) < 0)
    return -1;
  /* Keys only when a lookup needs them: a test shows that it then finds
   * every definition's (tests/functional/cowdev-restart.sh). */
  V.no_slices = getenv ("COWD_TEST_NO_KEY_SLICES") != NULL;
  /* In a cluster the slices wait until the agent is synced: during the
   * state transfer they took half of the loop's turns, and the transfer
   * as long again (voldb_keys_start, from own_on_synced). */
  V.keys_later = !cowd.standalone;
  /* The indexes sized once: a count costs a few ms with 100,000
   * definitions, growing by doubling about 50 (rehashing every entry,
   * and new pages). */
  long n = store_count (V.store);
  if (n > 0)
    voldb_reserve ((size_t) n);
  int r = store_foreach (V.store, voldb_row, NULL);
  if (r < 0)
    {
      snprintf (err, errlen, "cannot load the volume definitions from %s/%s",
                cowd.state_dir, STORE_FILE);
      return -1;
    }
  return 0;
}

int
voldb_err_opening (const struct vol_entry *e, char *err, size_t errlen)
{
  snprintf (err, errlen, "volume %s is being attached; try again", e->name);
  return -COW_E_BUSY;
}

/* What an attach opens e with; 0, or a code with its sentence in err. */
static int
voldb_attach_prep (struct vol_entry *e, struct vol_params *p,
                   struct backend_opts *bo, char *err, size_t errlen)
{
  if (e->opening)
    return voldb_err_opening (e, err, errlen);
  voldb_backend_opts (bo);
  if (cowd.own->backend_opts)
    cowd.own->backend_opts (bo);
  bool no_base = strcmp (e->base, VOLDB_NO_BASE) == 0;
  *p = (struct vol_params){ .name = e->name,
                            .base_uri = no_base ? NULL : e->base,
                            .cow_uri = e->cow,
                            .chunk_size = e->chunk_size,
                            .commit = e->commit,
                            .buffered = e->buffered,
                            .accept_base_change = e->accept_base_change,
                            .cow_user = voldb_cow_user,
                            .cow_user_ud = e->name,
                            .resume_merge = true };
  if ((!no_base && voldb_check_path (e->name, "base", e->base, err, errlen) < 0)
      || voldb_check_path (e->name, "CoW", e->cow, err, errlen) < 0)
    return -COW_E_BAD_DEVICE;
  const char *user = voldb_cow_user_uri (e->name, e->cow);
  if (user)
    return vol_err_cow_taken (err, errlen, e->name, e->cow, user);
  return 0;
}

/* e->vol was opened (and, standalone, taken over on the open's thread:
 * taken): serve it (an export) as its owner says.  On failure the volume
 * is closed again. */
static int
voldb_attach_opened (struct vol_entry *e, bool taken, char *err, size_t errlen)
{
  int r;
  voldb_live (e);
  if (cowd.own->opened)
    cowd.own->opened (e);
  if (cowd.clustered)
    vol_set_state (e->vol, VOL_STATE_READONLY); /* until the group says */
  else if (taken)
    vol_takeover_done (e->vol);
  char *sock = voldb_socket_path (e);
  e->exp = sock ? nbd_export_new (e->vol, sock, err, errlen) : NULL;
  free (sock);
  r = -COW_E_INTERNAL;
  if (!e->exp)
    goto out_close;
  /* A definition made before identities were recorded learns it here. */
  if (!e->cow_ident && voldb_ident_vpd (vol_cow_backend (e->vol)->ident)
      && voldb_set_ident (e, vol_cow_backend (e->vol)->ident) == 0)
    voldb_store_lazy (e);
  qb_log (LOG_INFO, "cowd: %s: attached (commit %s)", e->name,
          vol_commit_name (e->commit));
  voldb_set_error (e, NULL);
  return 0;

out_close:
  vol_close (e->vol, NULL, NULL);
  e->vol = NULL;
  voldb_live (e);
  return r;
}

/* voldb_cow_user_on_loop's question. */
struct cow_user_question
{
  struct vol_entry *e;
  const struct backend *cow;
  bool claim;
  char *user;
  int *claim_err;
  bool taken;
};

static void
cow_user_answer (void *data)
{
  struct cow_user_question *q = data;
  const char *user = voldb_cow_user (q->e->name, q->cow);
  q->taken = user != NULL;
  if (user)
    snprintf (q->user, DSCOW_NAME_MAX + 1, "%s", user);
  else if (q->claim && voldb_set_ident (q->e, q->cow->ident) < 0)
    *q->claim_err = ENOMEM;
}

const char *
voldb_cow_user_on_loop (struct vol_entry *e, const struct backend *cow,
                        bool claim, char *user, int *claim_err)
{
  struct cow_user_question q = { e, cow, claim, user, claim_err, false };
  cowd_on_loop (cow_user_answer, &q);
  return q.taken ? user : NULL;
}

struct voldb_joiner
{
  voldb_attach_fn *done;
  void *opaque;
  struct voldb_joiner *next;
};

int
voldb_attach_join (struct vol_entry *e, voldb_attach_fn *done, void *opaque)
{
  struct voldb_joiner *jn = malloc (sizeof *jn), **p = &e->joiners;
  if (!jn)
    return -ENOMEM;
  while (*p) /* answered in the order they came */
    p = &(*p)->next;
  *jn = (struct voldb_joiner){ done, opaque, NULL };
  *p = jn;
  return 0;
}

/* An attach whose devices open on a thread (voldb_attach_async). */
struct attach_job
{
  struct vol_entry *e;
  struct vol_params p;
  struct backend_opts bo;
  struct volume *v;
  char user[DSCOW_NAME_MAX + 1]; /* the CoW device's other volume */
  int r;
  char err[COW_ERRLEN];
  bool takeover; /* standalone, not transient: taken on the thread too */
};

/* vol_params.cow_user, from the thread: the table is the loop's. */
static const char *
attach_cow_user (void *ud, const struct backend *cow)
{
  struct attach_job *j = ud;
  return voldb_cow_user_on_loop (j->e, cow, false, j->user, NULL);
}

static void
attach_work (void *data)
{
  struct attach_job *j = data;
  j->r = vol_open (&j->p, &j->bo, &j->v, j->err, sizeof j->err);
  /* The standalone takeover re-reads the metadata and writes the
   * superblock dirty with FUA: blocking, so here too. */
  if (j->r == 0 && j->takeover)
    j->r = vol_takeover_io (j->v, vol_super (j->v)->epoch, 0, 0, j->err,
                            sizeof j->err);
}

static void
attach_done (void *data)
{
  struct attach_job *j = data;
  struct vol_entry *e = j->e;
  int r = j->r;
  e->opening = false;
  if (r == 0 && e->gone)
    {
      snprintf (j->err, sizeof j->err,
                "volume %s was deleted in the cluster while it was being "
                "attached",
                e->name);
      r = -COW_E_NO_SUCH_VOLUME;
    }
  if (r == 0)
    r = vol_start_loop (j->v, &j->bo, j->err, sizeof j->err);
  if (r < 0 && j->v)
    vol_close (j->v, NULL, NULL);
  else if (r == 0)
    {
      static uint64_t attaches;
      e->vol = j->v;
      e->attach_id = ++attaches;
      r = voldb_attach_opened (e, j->takeover, j->err, sizeof j->err);
    }
  /* The attach that began the open first, then those that joined it;
   * taken off e at once, as the first may forget e. */
  struct voldb_joiner *jn = e->joiners;
  e->joiners = NULL;
  while (jn)
    {
      struct voldb_joiner *next = jn->next;
      jn->done (jn->opaque, r, r < 0 ? j->err : NULL);
      free (jn);
      jn = next;
    }
  free (j);
}

int
voldb_attach_async (struct vol_entry *e, voldb_attach_fn *done, void *opaque,
                    char *err, size_t errlen)
{
  if (e->vol)
    return 0;
  struct attach_job *j = calloc (1, sizeof *j);
  if (!j)
    {
      snprintf (err, errlen, "volume %s: out of memory", e->name);
      return -COW_E_INTERNAL;
    }
  int r = voldb_attach_prep (e, &j->p, &j->bo, err, errlen);
  if (r < 0)
    {
      free (j);
      return r;
    }
  if (voldb_attach_join (e, done, opaque) < 0)
    {
      free (j);
      snprintf (err, errlen, "volume %s: out of memory", e->name);
      return -COW_E_INTERNAL;
    }
  j->e = e;
  j->bo.blocking_only = j->bo.loop_later = true;
  j->takeover = !cowd.clustered && e->commit != DSCOW_COMMIT_NONE;
  j->p.cow_user = attach_cow_user;
  j->p.cow_user_ud = j;
  e->opening = true;
  cowd_offload (attach_work, attach_done, j);
  return 1;
}

struct detach_ctx
{
  struct vol_entry *e;
  vol_done_fn *done;
  void *opaque;
};

static void
voldb_detach_closed (void *opaque, int res)
{
  struct detach_ctx *dc = opaque;
  dc->e->vol = NULL;
  dc->e->closing = false;
  voldb_live (dc->e);
  qb_log (LOG_INFO, "cowd: %s: detached", dc->e->name);
  if (dc->done)
    dc->done (dc->opaque, res);
  free (dc);
}

void
voldb_detach (struct vol_entry *e, vol_done_fn *done, void *opaque)
{
  struct detach_ctx *dc = malloc (sizeof *dc);
  if (!dc)
    abort ();
  *dc = (struct detach_ctx){ e, done, opaque };
  e->closing = true;
  if (e->exp)
    nbd_export_free (e->exp);
  e->exp = NULL;
  vol_close (e->vol, voldb_detach_closed, dc);
}
