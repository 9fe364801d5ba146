/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fencing.c: cowd's side of SCSI-3 fencing (FENCING in cowd(8); the
 * reservation logic itself is libcowfence's, fence/fence.h).
 *
 * Registration.  In a cluster every CoW LUN this agent opens over iSCSI
 * carries this node's key, fence_key (cluster, nodeid), registered on the
 * very session its writes use, and a WRITE EXCLUSIVE - REGISTRANTS ONLY
 * reservation.  The backend calls fencing_on_login after every login,
 * from the main loop and before it sends anything else on the session:
 *   first login      REGISTER AND IGNORE EXISTING KEY, then RESERVE unless
 *                    a type 5 reservation is there already;
 *   re-login         READ KEYS first: our key still listed means nobody
 *                    fenced us, so the new session registers too; our key
 *                    gone means a survivor preempted it: this agent is
 *                    fenced and must not register again;
 *   agent fenced     never register (until cowd restarts and rejoins).
 * Those commands are synchronous on the backend's context; a login is rare
 * and they take a round trip or two.  Base LUNs are only read and carry no
 * registration.  A block device (open-iscsi) is registered through SG_IO
 * at attach; one that has no SG_IO (a loop device) cannot be fenced by
 * reservations, which is logged, and needs fence-command or a confirm.
 *
 * Fencing others.  When a member leaves while owning volumes the table
 * puts them in `fencing`.  The designated fencer (cluster_is_fencer: the
 * lowest member of a quorate view that is not waiting to be fenced)
 * runs one job per victim on a worker thread, with iSCSI sessions or
 * device handles of its own, so that the main loop goes on serving.  Per
 * distinct CoW LUN of the victim's
 * volumes: READ KEYS (if our own key was there before and is gone, we are
 * the one fenced: stop), REGISTER AND IGNORE our key on the job's session,
 * PREEMPT AND ABORT the victim's key (PREEMPT where the target refuses
 * it), keeping the reservation.  Then the job reads that LUN's dscow
 * superblock: a frozen layer names the layer above it, which joins the
 * job (layer chains, ctl-chain.c), so the victim is preempted on every
 * layer up to the top.  Each superblock is read after its LUN was fenced:
 * every change of a chain is committed by a superblock write to a layer
 * already in it (the old top for a snapshot, the layer rolled back to,
 * the layer merged into), so once a layer is fenced what it says is
 * final, and a layer the victim linked just before is found.  A
 * superblock that cannot be read fails the job (it is retried).  The job's
 * registration stays behind on the LUN under our own key, as fence_scsi's do.
 * Then the configured fence-command, if any, with the node id as $1.  The
 * result comes back through a pipe on the main loop: FENCED(victim) is
 * multicast, or the job is retried after 1, 2, 4 .. 10 s until it succeeds or
 * an operator confirms.  `cowctl fence NODE` runs the same job at once for
 * whatever NODE owns, also while it is still a member (a hung agent).
 *
 * Being fenced.  FENCED(this node), a write refused with RESERVATION
 * CONFLICT, our key gone at a re-login, or a table in which a volume we
 * served went to someone else without a handoff: fencing_self stops every
 * volume (state fenced: every request fails), marks the cluster table
 * stale, and the agent registers nowhere until it is restarted.  A
 * restarted agent whose first table still holds its node in fencing waits
 * for another member to fence the previous agent (whose key it shares),
 * and then registers again rather than stopping.
 *
 * Threads: the main loop owns everything here except a job while it runs
 * on its worker thread; the job is handed over whole (the pipe carries its
 * pointer back) and never shared.  The worker never logs: what the walk
 * found is logged by the main loop when the job comes back, in order with
 * the membership change that started it.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBISCSI
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include "backend-iscsi.h"
#else
struct iscsi_context;
#endif
#include "cowlog.h"

#include "clock.h"
#include "cluster.h"
#include "cowd.h"
#include "cowthread.h"
#include "ctl.h"
#include "dscow.h"
#include "fence.h"
#include "loop.h"

#define FJ_MAX_LUNS 256
#define FJ_RETRY_MAX_MS 10000
#define FJ_HISTORY 32

struct fjob_lun
{
  char *uri;
  bool was_registered; /* this agent registered there before */
  int listed;          /* confirm: our key there (1, 0, -1) */
  /* Found by the walk up a chain: the layer below (an index in the
   * job's luns) and the volume its superblock names; else below < 0. */
  int below;
  char *volume;
};

struct fjob
{
  struct fjob *next;
  uint32_t victim;
  uint64_t my_key, victim_key;
  struct fjob_lun luns[FJ_MAX_LUNS];
  size_t nluns;
  char *initiator, *chap_user, *chap_password, *command;
  struct ctl_req *req; /* manual: reply when done */
  bool confirm;        /* no victim: READ KEYS for our own key */
  uint64_t standing;   /* confirm: fencing_standing () at start */
  /* Results, written by the worker */
  int ok;
  bool self_fenced;
  char err[512];
  uint64_t t_start_ns, t_end_ns;
};

struct fretry
{
  uint32_t node;
  unsigned ms;    /* the next wait */
  uint64_t at_ns; /* not before */
  char err[512];  /* the last failure */
};

struct fevent
{
  uint32_t node, by;
  bool storage;
  uint64_t at_ns;
  double fence_ms; /* the job's time, on the fencer */
};

static struct
{
  int pipe[2];
  struct fjob *running;                     /* jobs on worker threads */
  struct fretry retry[CLUSTER_MAX_MEMBERS]; /* failed fences, by victim */
  size_t nretry;
  qb_loop_timer_handle timer;
  bool timer_armed;
  char **registered;           /* LUNs this agent registered on */
  uint64_t *registered_breaks; /* cluster_standing_breaks then */
  size_t nregistered;
  bool confirming;                         /* a confirm job runs */
  uint32_t announced[CLUSTER_MAX_MEMBERS]; /* FENCED sent, not delivered */
  size_t nannounced;
  struct fevent history[FJ_HISTORY];
  size_t nhistory;
  double last_job_ms;
  bool synced_once;     /* this process has had a table */
  bool previous_victim; /* ... and it held this node in fencing */
} F = { .pipe = { -1, -1 } };

static uint64_t
my_key (void)
{
  return fence_key (cowd.cluster_name, cluster_nodeid ());
}

/* --- registration on our own sessions --- */

/* The index of uri among the LUNs this agent registered on, or -1. */
static ssize_t
fencing_registered_at (const char *uri)
{
  for (size_t i = 0; i < F.nregistered; i++)
    if (strcmp (F.registered[i], uri) == 0)
      return (ssize_t) i;
  return -1;
}

static bool
fencing_was_registered (const char *uri)
{
  return fencing_registered_at (uri) >= 0;
}

/* Quorate with a lease now: cluster_standing_breaks, else UINT64_MAX. */
static uint64_t
fencing_standing (void)
{
  if (!cluster_quorate () || cluster_lease_deadline_ns () <= clock_now_ns ())
    return UINT64_MAX;
  return cluster_standing_breaks ();
}

/* Remember that we registered on uri, and the standing we had then
 * (registered without quorum or lease: none, and a lost key later always
 * reads as a fence). */
static void
fencing_note_registered (const char *uri)
{
  uint64_t breaks = fencing_standing ();
  ssize_t i = fencing_registered_at (uri);
  if (i >= 0)
    {
      F.registered_breaks[i] = breaks;
      return;
    }
  char **n = realloc (F.registered, (F.nregistered + 1) * sizeof *n);
  if (n)
    F.registered = n;
  uint64_t *b = realloc (F.registered_breaks, (F.nregistered + 1) * sizeof *b);
  if (b)
    F.registered_breaks = b;
  if (!n || !b || !(n[F.nregistered] = strdup (uri)))
    return;
  b[F.nregistered++] = breaks;
}

/* Our key is gone from a LUN we registered on.  Another node removed it
 * (PREEMPT: we were fenced), or the target lost every registration (a
 * restart that did not persist them: tgtd keeps them in memory).  The
 * group fences only a node that left its quorate membership, and leaving
 * costs this node its quorum and lease first: if it has held both without
 * a break since it registered here, nobody fenced it, and it registers
 * again.  Otherwise it stops as fenced (a frozen or cut-off agent that
 * wakes on a restarted target included). */
static bool
fencing_target_lost_keys (struct backend *bk, struct fence_dev *dev,
                          uint64_t key)
{
  uint64_t keys[8];
  size_t n = 0;
  uint32_t gen = 0;
  ssize_t i = fencing_registered_at (bk->uri);
  if (fence_read_keys (dev, keys, 8, &n, &gen) < 0)
    n = 0, gen = 0;
  bool standing = i >= 0 && F.registered_breaks[i] != UINT64_MAX
                  && F.registered_breaks[i] == fencing_standing ();
  if (!standing)
    {
      qb_log (LOG_ERR,
              "fence: %s: this node's key %016" PRIx64 " is gone "
              "from the LUN (%zu keys left, reservation generation %u), and "
              "this node has not held quorum and its lease without a break "
              "since it registered there: another node fenced it",
              bk->uri, key, n, gen);
      return false;
    }
  qb_log (LOG_WARNING,
          "fence: %s: this node's key %016" PRIx64 " is gone "
          "from the LUN (%zu keys left, reservation generation %u), though "
          "this node has held quorum and its lease without a break since it "
          "registered there: the target lost its registrations (restarted "
          "without persisting them); it registers again",
          bk->uri, key, n, gen);
  return true;
}

/* Register (and reserve) dev for this node.  A LUN this agent registered
 * on before is a re-login (the open path logs in too): check our key. */
static void
fencing_register (struct backend *bk, struct fence_dev *dev)
{
  uint64_t key = my_key ();
  bool relogin = fencing_was_registered (bk->uri);
  if (cowd.fenced)
    {
      qb_log (LOG_WARNING,
              "fence: %s: this agent was fenced; it registers "
              "again only after a restart",
              bk->uri);
      bk->health = BK_FENCED;
      return;
    }
  if (relogin && fence_key_listed (dev, key) == 0
      && !fencing_target_lost_keys (bk, dev, key))
    {
      bk->health = BK_FENCED;
      fencing_self ("its key was removed from a LUN");
      return;
    }
  if (fence_register (dev, key) < 0 || fence_reserve (dev, key) < 0)
    {
      qb_log (LOG_WARNING,
              "%s; this volume cannot be fenced by "
              "reservations",
              fence_last_error (dev));
      return;
    }
  fencing_note_registered (bk->uri);
  qb_log (LOG_INFO, "fence: %s: registered key %016" PRIx64 "%s", bk->uri, key,
          relogin ? " on the new session" : "");
}

static void
fencing_on_login (struct backend *bk, void *opaque)
{
#ifdef HAVE_LIBISCSI
  if (!bk->writable || !cowd.clustered)
    return;
  struct iscsi_context *ctx = backend_iscsi_context (bk);
  struct fence_dev *dev
      = fence_dev_iscsi (ctx, backend_iscsi_lun (bk), bk->uri);
  if (!dev)
    return;
  fencing_register (bk, dev);
  fence_dev_free (dev);
#endif
}

static void
fencing_on_conflict (struct backend *bk, void *opaque)
{
  fencing_self ("a write came back RESERVATION CONFLICT");
}

/* Writes reach a LUN only from an agent that was not fenced (-EACCES: they
 * fail) and whose lease holds with the group's table (-EAGAIN: they wait,
 * unsent).  The lease alone is not enough: a node cut off and merged back
 * renews it in the merged ring before the quorate side's table, which may
 * have fenced it, has arrived; once the table is here (own_reconcile) a
 * deposed agent is fenced and what waited fails. */
static int
fencing_may_write (struct backend *bk, void *opaque)
{
  if (cowd.fenced)
    return -EACCES;
  if (cowd.clustered
      && (cowd_now_ns () >= cluster_lease_deadline_ns () || !cluster_synced ()))
    return -EAGAIN;
  return 0;
}

/* The session that formats a CoW device: REGISTER AND IGNORE EXISTING
 * KEY only.  With a reservation there (a deleted volume's), registrants
 * may write; without one, anyone may.  Not noted among this agent's
 * registrations: the session closes after the format, and the volume's
 * own sessions register when it is attached. */
static void
fencing_on_format_login (struct backend *bk, void *opaque)
{
#ifdef HAVE_LIBISCSI
  if (!bk->writable || !cowd.clustered || cowd.fenced)
    return;
  struct fence_dev *dev = fence_dev_iscsi (backend_iscsi_context (bk),
                                           backend_iscsi_lun (bk), bk->uri);
  if (!dev)
    return;
  if (fence_register (dev, my_key ()) < 0)
    qb_log (LOG_WARNING, "%s; formatting without a registration",
            fence_last_error (dev));
  fence_dev_free (dev);
#endif
}

void
fencing_format_opts (struct backend_opts *bo)
{
  bo->on_login = fencing_on_format_login;
}

void
fencing_backend_opts (struct backend_opts *bo)
{
  bo->on_login = fencing_on_login;
  bo->on_fenced = fencing_on_conflict;
  bo->may_write = fencing_may_write;
}

/* A block device CoW (open-iscsi): register through SG_IO. */
void
fencing_attach_blockdev (struct backend *bk)
{
  int fd = backend_file_fd (bk);
  if (!cowd.clustered || !bk->is_blockdev || fd < 0)
    return;
  char err[512];
  struct fence_dev *dev = fence_dev_sg (fd, bk->uri, err, sizeof err);
  if (!dev)
    {
      qb_log (LOG_WARNING,
              "fence: %s: %s; this volume cannot be fenced by "
              "reservations (configure fence-command)",
              bk->uri, err);
      return;
    }
  fencing_register (bk, dev);
  fence_dev_free (dev);
}

/* --- being fenced --- */

void
fencing_self (const char *why)
{
  if (!cowd.fenced)
    qb_log (LOG_CRIT,
            "fence: this node was fenced (%s): it stops serving "
            "every volume and registers nowhere until it has the group's "
            "table again (or cowd is restarted)",
            why);
  cowd.fenced = true;
  cluster_set_stale ();
  VOLDB_FOR_LIVE (e)
    if (e->vol && vol_get_state (e->vol) != VOL_STATE_FENCED)
      {
        qb_log (LOG_ERR, "fence: %s: fenced; requests fail from now on",
                e->name);
        own_forget_epoch (e);
        vol_fence (e->vol);
      }
  own_wake_fenced ();
}

/* --- the worker --- */

static struct fjob_lun *fj_push_lun (struct fjob *j, const char *uri);

/* The first 8 KiB of the LUN (both superblock slots) into buf: 0 or -1. */
static int
fj_read_supers (struct fence_dev *dev, const char *uri, uint8_t *buf)
{
  size_t len = 2 * DSCOW_SUPER_SIZE;
#ifdef HAVE_LIBISCSI
  int lun;
  struct iscsi_context *ctx = fence_dev_iscsi_context (dev, &lun);
  if (ctx)
    {
      struct scsi_task *t = iscsi_readcapacity16_sync (ctx, lun);
      struct scsi_readcapacity16 *rc = t && t->status == SCSI_STATUS_GOOD
                                           ? scsi_datain_unmarshall (t)
                                           : NULL;
      uint32_t bs = rc ? rc->block_length : 0;
      if (t)
        scsi_free_scsi_task (t);
      if (bs == 0 || len % bs)
        return -1;
      t = iscsi_read16_sync (ctx, lun, 0, (uint32_t) len, (int) bs, 0, 0, 0, 0,
                             0);
      int r = t && t->status == SCSI_STATUS_GOOD && t->datain.size >= (int) len
                  ? 0
                  : -1;
      if (r == 0)
        memcpy (buf, t->datain.data, len);
      if (t)
        scsi_free_scsi_task (t);
      return r;
    }
#endif
  /* A block device: around the page cache, which may hold what another
   * host's superblock said before. */
  void *a = NULL;
  int fd = open (uri, O_RDONLY | O_CLOEXEC | O_DIRECT);
  ssize_t n = fd >= 0 && posix_memalign (&a, 4096, len) == 0
                  ? pread (fd, a, len, 0)
                  : -1;
  if (n == (ssize_t) len)
    memcpy (buf, a, len);
  free (a);
  if (fd >= 0)
    close (fd);
  return n == (ssize_t) len ? 0 : -1;
}

/* The victim was fenced on l: the layer its superblock names above it
 * (a frozen layer of a chain) joins the job.  0, or -1 with j->err. */
static int
fj_walk_up (struct fjob *j, struct fence_dev *dev, struct fjob_lun *l)
{
  uint8_t buf[2 * DSCOW_SUPER_SIZE];
  struct dscow_super sb;
  unsigned slot;
  if (fj_read_supers (dev, l->uri, buf) < 0)
    {
      snprintf (j->err, sizeof j->err,
                "%s: fenced, but its superblock could not be read to find "
                "the layers above it",
                l->uri);
      return -1;
    }
  if (dscow_super_pick (buf, sizeof buf, &sb, &slot) < 0
      || !(sb.ro_compat & DSCOW_RO_COMPAT_FROZEN) || !sb.upper_uri[0])
    return 0; /* not a frozen layer: nothing above it */
  struct fjob_lun *up = fj_push_lun (j, sb.upper_uri);
  if (!up)
    return 0; /* in the job already (or the job is full) */
  /* Logged by fj_done on the main loop, in order with what the main loop
   * logs of the membership change that started the job. */
  up->below = (int) (l - j->luns);
  up->volume = strdup (sb.name);
  return 0;
}

/* Fence the victim on one LUN through a session of its own (fence/):
 * 0, or -1 with j->err (and j->self_fenced when our own key is gone). */
static int
fj_lun (struct fjob *j, struct fjob_lun *l)
{
  struct fence_login login
      = { j->initiator, j->chap_user, j->chap_password, 5 };
  char err[400];
  struct fence_dev *dev = fence_dev_open (l->uri, &login, err, sizeof err);
  if (!dev)
    {
      bool not_scsi = errno == EOPNOTSUPP && strncmp (l->uri, "iscsi://", 8);
      snprintf (j->err, sizeof j->err, "%s%s", err,
                not_scsi
                    ? " (not a SCSI device: configure fence-command or confirm "
                      "by hand)"
                    : "");
      return -1;
    }
  enum fence_lun_result r = fence_lun (
      dev, j->my_key, j->victim_key, l->was_registered, j->err, sizeof j->err);
  j->self_fenced = r == FENCE_LUN_SELF_FENCED;
  int ret = r == FENCE_LUN_FENCED || r == FENCE_LUN_ALREADY ? 0 : -1;
  if (ret == 0)
    ret = fj_walk_up (j, dev, l);
  fence_dev_free (dev);
  return ret;
}

static int
fj_command (struct fjob *j)
{
  char node[16];
  snprintf (node, sizeof node, "%" PRIu32, j->victim);
  pid_t pid = fork ();
  if (pid == 0)
    {
      execl ("/bin/sh", "sh", "-c", j->command, "cowd-fence", node,
             (char *) NULL);
      _exit (127);
    }
  int st;
  if (pid < 0 || waitpid (pid, &st, 0) < 0)
    {
      snprintf (j->err, sizeof j->err, "cannot run fence-command: %m");
      return -1;
    }
  if (WIFEXITED (st) && WEXITSTATUS (st) == 0)
    return 0;
  snprintf (j->err, sizeof j->err, "fence-command '%s %s' failed (%s %d)",
            j->command, node, WIFEXITED (st) ? "exit status" : "signal",
            WIFEXITED (st) ? WEXITSTATUS (st) : WTERMSIG (st));
  return -1;
}

/* READ KEYS on each LUN through a session of the job's own: is our key
 * still there? */
static void
fj_confirm (struct fjob *j)
{
  struct fence_login login
      = { j->initiator, j->chap_user, j->chap_password, 5 };
  for (size_t i = 0; i < j->nluns; i++)
    {
      char err[400];
      struct fence_dev *dev
          = fence_dev_open (j->luns[i].uri, &login, err, sizeof err);
      j->luns[i].listed = dev ? fence_key_listed (dev, j->my_key) : -1;
      if (dev)
        fence_dev_free (dev);
    }
}

static void *
fj_run (void *arg)
{
  struct fjob *j = arg;
  if (j->confirm)
    {
      fj_confirm (j);
      j->t_end_ns = cowd_now_ns ();
      if (write (F.pipe[1], &j, sizeof j) != sizeof j)
        abort ();
      return NULL;
    }
  bool unfenceable = false;
  j->ok = 1;
  for (size_t i = 0; i < j->nluns && !j->self_fenced; i++)
    if (fj_lun (j, &j->luns[i]) < 0)
      unfenceable = true;
  if (j->self_fenced)
    j->ok = 0;
  else if (j->command && fj_command (j) < 0)
    j->ok = 0;
  else if (unfenceable && !j->command)
    j->ok = 0; /* j->err names the LUN */
  j->t_end_ns = cowd_now_ns ();
  if (write (F.pipe[1], &j, sizeof j) != sizeof j)
    abort (); /* the main loop would wait forever */
  return NULL;
}

/* --- jobs, on the main loop --- */

struct fj_collect
{
  struct fjob *j;
  bool manual;
};

/* A LUN new to the job (not registered there before, as far as it
 * knows), or NULL: listed already, the job is full, or no memory.  Also
 * from the worker (fj_walk_up): it touches nothing but the job. */
static struct fjob_lun *
fj_push_lun (struct fjob *j, const char *uri)
{
  for (size_t i = 0; i < j->nluns; i++)
    if (strcmp (j->luns[i].uri, uri) == 0)
      return NULL;
  if (j->nluns == FJ_MAX_LUNS || !(j->luns[j->nluns].uri = strdup (uri)))
    return NULL;
  j->luns[j->nluns].was_registered = false;
  j->luns[j->nluns].below = -1;
  j->luns[j->nluns].volume = NULL;
  return &j->luns[j->nluns++];
}

static void
fj_add_lun (struct fjob *j, const char *uri)
{
  struct fjob_lun *l = fj_push_lun (j, uri);
  if (!l)
    return;
  /* Registrations are noted under the backend's own name for the LUN. */
  char *bk_uri = NULL;
#ifdef HAVE_LIBISCSI
  bk_uri = backend_iscsi_uri (uri);
#endif
  l->was_registered = fencing_was_registered (bk_uri ? bk_uri : uri);
  free (bk_uri);
}

static void
fj_collect (void *ud, const struct cluster_vol *v)
{
  struct fj_collect *c = ud;
  bool fencing = v->state == CL_FENCING && v->fenced_node == c->j->victim;
  if (fencing || (c->manual && v->owner == c->j->victim))
    fj_add_lun (c->j, v->def.cow);
}

static void
fj_free (struct fjob *j)
{
  for (size_t i = 0; i < j->nluns; i++)
    {
      free (j->luns[i].uri);
      free (j->luns[i].volume);
    }
  free (j->initiator);
  free (j->chap_user);
  free (j->chap_password);
  free (j->command);
  free (j);
}

static struct fjob *
fj_running (uint32_t victim)
{
  for (struct fjob *j = F.running; j; j = j->next)
    if (j->victim == victim)
      return j;
  return NULL;
}

static char *
dup_or_null (const char *s)
{
  return s ? strdup (s) : NULL;
}

/* A job with this host's login settings; the caller adds the LUNs. */
static struct fjob *
fj_new (void)
{
  struct fjob *j = calloc (1, sizeof *j);
  if (!j)
    return NULL;
  j->my_key = my_key ();
#ifdef HAVE_LIBISCSI
  char iqn[256];
  backend_iscsi_initiator (cowd.initiator_name, iqn, sizeof iqn);
  j->initiator = strdup (iqn);
#endif
  j->chap_user = dup_or_null (cowd.chap_user);
  j->chap_password = dup_or_null (cowd.chap_password);
  j->command = dup_or_null (cowd.fence_command);
  j->t_start_ns = cowd_now_ns ();
  return j;
}

/* Run j on a worker thread of its own: 0, or -errno (j freed). */
static int
fj_launch (struct fjob *j)
{
  pthread_t t;
  int r = cow_thread_create (&t, true, fj_run, j);
  if (r != 0)
    fj_free (j);
  return -r;
}

static int
fj_start (uint32_t victim, struct ctl_req *req)
{
  struct fjob *j = fj_new ();
  if (!j)
    return -ENOMEM;
  j->victim = victim;
  j->victim_key = fence_key (cowd.cluster_name, victim);
  j->req = req;
  struct fj_collect c = { j, req != NULL };
  cluster_foreach (fj_collect, &c);
  /* Read before the worker runs: it adds the layers it finds above. */
  size_t nluns = j->nluns;
  bool command = j->command != NULL;
  int r = fj_launch (j);
  if (r < 0)
    return r;
  j->next = F.running;
  F.running = j;
  qb_log (LOG_WARNING, "fence: fencing node %" PRIu32 " on %zu LUN%s%s", victim,
          nluns, nluns == 1 ? "" : "s",
          command ? " and with fence-command" : "");
  return 0;
}

/* --- confirming our keys when quorum and the lease come back --- */

/* A registration is trusted across a target that forgets its
 * registrations only while this node has stood (quorum, lease, majority)
 * without a break since it registered (fencing_target_lost_keys).  Every
 * membership change breaks the lease for token + consensus, so a
 * registration would soon be older than any standing.  When standing
 * returns, READ KEYS (on a session of a worker's own) confirms the key on
 * every LUN registered before the break, and the registration counts from
 * the new standing.  A key gone is a fence, as at a re-login.  Only on a
 * current table that holds no volume in fencing for this node (nobody is
 * about to fence it), at the start and again at the end. */
static bool
fencing_may_confirm (void)
{
  return cowd.clustered && !cowd.fenced && cluster_synced ()
         && !cluster_fence_pending (cluster_nodeid ());
}

void
fencing_on_standing (void)
{
  uint64_t b = fencing_standing ();
  if (!fencing_may_confirm () || F.confirming || b == UINT64_MAX)
    return;
  struct fjob *j = NULL;
  VOLDB_FOR_LIVE (e)
    {
      if (!e->vol || e->closing)
        continue;
      struct backend *bk = vol_cow_backend (e->vol);
      ssize_t i = fencing_registered_at (bk->uri);
      if (i < 0 || F.registered_breaks[i] == b)
        continue;
      if (!j && !(j = fj_new ()))
        return;
      fj_add_lun (j, e->cow);
    }
  if (!j)
    return;
  j->confirm = true;
  j->standing = b;
  if (fj_launch (j) < 0)
    return;
  F.confirming = true;
}

static void
fj_confirm_done (struct fjob *j)
{
  F.confirming = false;
  bool still = fencing_standing () == j->standing && fencing_may_confirm ();
  size_t confirmed = 0;
  for (size_t k = 0; k < j->nluns; k++)
    {
      struct fjob_lun *l = &j->luns[k];
      char *bk_uri = NULL;
#ifdef HAVE_LIBISCSI
      bk_uri = backend_iscsi_uri (l->uri);
#endif
      ssize_t i = fencing_registered_at (bk_uri ? bk_uri : l->uri);
      if (i >= 0 && l->listed == 1 && still)
        {
          F.registered_breaks[i] = j->standing;
          confirmed++;
        }
      else if (i >= 0 && l->listed == 0 && !cowd.fenced
               && F.registered_breaks[i] != j->standing)
        {
          qb_log (LOG_ERR,
                  "fence: %s: this node's key %016" PRIx64 " is "
                  "gone from the LUN, and this node has not stood without "
                  "a break since it registered there: another node fenced "
                  "it",
                  F.registered[i], j->my_key);
          fencing_self ("its key was removed from a LUN");
        }
      free (bk_uri);
    }
  qb_log (LOG_INFO,
          "fence: key confirmed on %zu of %zu LUN%s now that "
          "quorum and the lease are back",
          confirmed, j->nluns, j->nluns == 1 ? "" : "s");
  if (!still)
    fencing_on_standing (); /* another break meanwhile: again */
}

static struct fretry *
fj_retry_find (uint32_t node)
{
  for (size_t i = 0; i < F.nretry; i++)
    if (F.retry[i].node == node)
      return &F.retry[i];
  return NULL;
}

static struct fretry *
fj_retry_slot (uint32_t node)
{
  struct fretry *r = fj_retry_find (node);
  if (r)
    return r;
  r = &F.retry[F.nretry < CLUSTER_MAX_MEMBERS ? F.nretry++ : 0];
  *r = (struct fretry){ .node = node };
  return r;
}

static void
fj_retry_forget (uint32_t node)
{
  struct fretry *r = fj_retry_find (node);
  if (r)
    *r = F.retry[--F.nretry];
}

static void fencing_timer (void *data);

static void
fj_arm_timer (void)
{
  if (F.timer_armed)
    return;
  F.timer_armed = true;
  qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW, 250000000ull, NULL,
                     fencing_timer, &F.timer);
}

static void
fj_reply (struct fjob *j)
{
  if (!j->req)
    return;
  char s[700];
  if (j->ok)
    snprintf (s, sizeof s,
              ctl_req_flags (j->req) & CTL_F_JSON
                  ? "{\"node\":%" PRIu32 ",\"fenced\":true,"
                    "\"luns\":%zu}\n"
                  : "node %" PRIu32 " fenced on %zu LUN(s)\n",
              j->victim, j->nluns);
  else
    snprintf (s, sizeof s, "cannot fence node %" PRIu32 ": %s", j->victim,
              j->err);
  if (j->ok)
    ctl_reply (j->req, 0, s);
  else
    ctl_reply_error (j->req, j->self_fenced ? COW_E_FENCED : COW_E_IO, s);
}

static void
fj_done (struct fjob *j)
{
  if (j->confirm)
    {
      fj_confirm_done (j);
      fj_free (j);
      return;
    }
  for (struct fjob **p = &F.running; *p; p = &(*p)->next)
    if (*p == j)
      {
        *p = j->next;
        break;
      }
  double ms = (double) (j->t_end_ns - j->t_start_ns) / 1e6;
  for (size_t i = 0; i < j->nluns; i++)
    if (j->luns[i].below >= 0)
      qb_log (LOG_INFO,
              "fence: node %" PRIu32 ": %s is a snapshot of %s; "
              "fencing the layer above it, %s, too",
              j->victim, j->luns[j->luns[i].below].uri,
              j->luns[i].volume ? j->luns[i].volume : "?", j->luns[i].uri);
  if (j->self_fenced)
    fencing_self ("its own key was gone when it came to fence another node");
  if (j->ok)
    {
      qb_log (LOG_WARNING,
              "fence: node %" PRIu32 " fenced on %zu LUN%s in "
              "%.1f ms",
              j->victim, j->nluns, j->nluns == 1 ? "" : "s", ms);
      F.last_job_ms = ms;
      fj_retry_forget (j->victim);
      if (F.nannounced < CLUSTER_MAX_MEMBERS)
        F.announced[F.nannounced++] = j->victim;
      if (cluster_fenced (j->victim) < 0)
        qb_log (LOG_ERR,
                "fence: node %" PRIu32 " was fenced but this node "
                "lost quorum before it could tell the group",
                j->victim);
    }
  else if (!j->self_fenced)
    {
      struct fretry *r = fj_retry_slot (j->victim);
      unsigned next = r->ms ? r->ms * 2 : 1000;
      r->ms = next > FJ_RETRY_MAX_MS ? FJ_RETRY_MAX_MS : next;
      r->at_ns = cowd_now_ns () + (uint64_t) r->ms * 1000000ull;
      snprintf (r->err, sizeof r->err, "%s", j->err);
      qb_log (LOG_ERR,
              "fence: cannot fence node %" PRIu32 ": %s; retrying "
              "in %u ms (or: cowctl fence confirm %" PRIu32 ")",
              j->victim, j->err, r->ms, j->victim);
      fj_arm_timer ();
    }
  fj_reply (j);
  fj_free (j);
}

static int
fencing_pipe_dispatch (int fd, int revents, void *data)
{
  struct fjob *j;
  while (read (F.pipe[0], &j, sizeof j) == sizeof j)
    fj_done (j);
  fencing_kick ();
  return 0;
}

struct fj_victims
{
  uint32_t nodes[CLUSTER_MAX_MEMBERS];
  size_t n;
};

static void
fj_find_victims (void *ud, const struct cluster_vol *v)
{
  struct fj_victims *vs = ud;
  if (v->state != CL_FENCING)
    return;
  for (size_t i = 0; i < vs->n; i++)
    if (vs->nodes[i] == v->fenced_node)
      return;
  if (vs->n < CLUSTER_MAX_MEMBERS)
    vs->nodes[vs->n++] = v->fenced_node;
}

static bool
fj_announced (uint32_t node)
{
  for (size_t i = 0; i < F.nannounced; i++)
    if (F.announced[i] == node)
      return true;
  return false;
}

/* Start a job for every node that waits to be fenced and has none. */
void
fencing_kick (void)
{
  if (!cowd.clustered || cowd.fencing_manual || cowd.fenced
      || !cluster_is_fencer ())
    return;
  struct fj_victims vs = { .n = 0 };
  cluster_foreach (fj_find_victims, &vs);
  uint64_t now = cowd_now_ns ();
  for (size_t i = 0; i < vs.n; i++)
    {
      if (fj_running (vs.nodes[i]) || fj_announced (vs.nodes[i]))
        continue;
      struct fretry *r = fj_retry_find (vs.nodes[i]);
      if (r && r->at_ns > now)
        {
          fj_arm_timer ();
          continue;
        }
      fj_start (vs.nodes[i], NULL);
    }
}

static void
fencing_timer (void *data)
{
  F.timer_armed = false;
  fencing_kick ();
}

int
fencing_start (char *err, size_t errlen)
{
  /* The pipe first: a job the first kick starts reports through it. */
  if (pipe2 (F.pipe, O_CLOEXEC | O_NONBLOCK) < 0)
    {
      snprintf (err, errlen, "cannot make the fencing pipe: %m");
      return -1;
    }
  qb_loop_poll_add (cowd_loop (), QB_LOOP_HIGH, F.pipe[0], POLLIN, NULL,
                    fencing_pipe_dispatch);
  /* From now on fencing starts from the cluster's callbacks: membership
   * changes (own_on_members), quorum (own_on_quorum), the table's arrival
   * (own_on_synced), a node announced down (own_on_fencing); retries from
   * fj_arm_timer.  No polling. */
  fencing_kick ();
  return 0;
}

/* cowctl fence NODE: fence whatever NODE owns, now. */
void
fencing_manual (uint32_t node, struct ctl_req *req)
{
  char s[200];
  int code = COW_E_INTERNAL;
  if (node == cluster_nodeid ())
    snprintf (s, sizeof s,
              "node %" PRIu32 " is this node; fence it from "
              "another one",
              node),
        code = COW_E_USAGE;
  else if (!cluster_quorate ())
    snprintf (s, sizeof s,
              "cannot fence node %" PRIu32 ": this node is not "
              "quorate",
              node),
        code = COW_E_NO_QUORUM;
  else if (cowd.fenced)
    snprintf (s, sizeof s,
              "cannot fence node %" PRIu32 ": this node was "
              "fenced itself",
              node),
        code = COW_E_FENCED;
  else if (fj_running (node))
    snprintf (s, sizeof s, "node %" PRIu32 " is being fenced already", node),
        code = COW_E_BUSY;
  else if (fj_start (node, req) == 0)
    return;
  else
    snprintf (s, sizeof s,
              "cannot fence node %" PRIu32 ": cannot start a "
              "thread",
              node);
  ctl_reply_error (req, code, s);
}

/* --- what the group says --- */

/* The first table this process gets.  One that holds this node in
 * fencing names the cowd that ran here before (this process owned
 * nothing yet, and a node goes to fencing only when it leaves the group
 * while owning): that agent is fenced by another member (never by this
 * one, cluster_is_fencer), and this one registers again afterwards. */
void
fencing_on_synced (void)
{
  if (F.synced_once || !cowd.clustered)
    return;
  F.synced_once = true;
  F.previous_victim = cluster_fence_pending (cluster_nodeid ());
  if (F.previous_victim)
    qb_log (LOG_WARNING,
            "fence: the group holds volumes of node %" PRIu32
            "'s previous agent in fencing; this agent waits for another "
            "node to fence it, then registers again",
            cluster_nodeid ());
}

/* A volume was detached: its LUN's next login (a later attach) is a
 * first one.  A key gone by then is no news of a fence: the group fences
 * a node only on the LUNs of volumes it owns, and an agent fenced while it
 * had this one open found out then (or on the table after a merge). */
void
fencing_forget_lun (const char *uri)
{
  ssize_t i = fencing_registered_at (uri);
  if (i < 0)
    return;
  free (F.registered[i]);
  F.registered[i] = F.registered[F.nregistered - 1];
  F.registered_breaks[i] = F.registered_breaks[F.nregistered - 1];
  F.nregistered--;
}

/* Forget every LUN this agent registered on: the next login on each is
 * a first one. */
void
fencing_forget_registrations (void)
{
  for (size_t i = 0; i < F.nregistered; i++)
    free (F.registered[i]);
  F.nregistered = 0;
}

/* The previous agent's key was this node's key too: the fence removed
 * whatever this agent had registered.  Register on every session again. */
static void
fencing_register_again (void)
{
  fencing_forget_registrations ();
  VOLDB_FOR_LIVE (e)
    {
      if (!e->vol)
        continue;
      struct backend *bk = vol_cow_backend (e->vol);
      if (strcmp (bk->ops->name, "iscsi") == 0)
        fencing_on_login (bk, NULL);
      else
        fencing_attach_blockdev (bk);
    }
}

void
fencing_on_fenced (uint32_t node, uint32_t by, bool storage)
{
  qb_log (LOG_WARNING,
          "cluster: node %" PRIu32 " %s by node %" PRIu32 "; "
          "its volumes are unowned now",
          node, storage ? "was fenced" : "was confirmed down", by);
  if (F.nhistory == FJ_HISTORY) /* full: the oldest goes */
    memmove (F.history, F.history + 1, --F.nhistory * sizeof *F.history);
  F.history[F.nhistory++]
      = (struct fevent){ node, by, storage, cowd_now_ns (),
                         by == cluster_nodeid () ? F.last_job_ms : 0 };
  fj_retry_forget (node);
  for (size_t k = 0; k < F.nannounced;)
    if (F.announced[k] == node)
      F.announced[k] = F.announced[--F.nannounced];
    else
      k++;
  if (node == cluster_nodeid () && F.previous_victim)
    {
      F.previous_victim = false;
      qb_log (LOG_WARNING, "fence: that was this node's previous agent; "
                           "this one was not fenced and registers again");
      fencing_register_again ();
    }
  else if (node == cluster_nodeid ())
    fencing_self (storage ? "the group says so"
                          : "an operator confirmed it "
                            "down");
}

/* --- cowctl fence probe NAME --- */

/* Can this host still write the volume's CoW LUN?  A WRITE(16) of zero
 * blocks through the very session the volume writes on: it moves no data,
 * but the target checks the reservation first.  A UNIT ATTENTION (e.g.
 * 2A/03, reservations preempted) is read and the command sent again. */
int
fencing_probe (struct vol_entry *e, char *out, size_t outlen)
{
#ifdef HAVE_LIBISCSI
  struct backend *bk = vol_cow_backend (e->vol);
  if (strcmp (bk->ops->name, "iscsi") != 0)
    {
      snprintf (out, outlen, "volume %s: the probe needs an iSCSI CoW LUN",
                e->name);
      return -1;
    }
  struct iscsi_context *ctx = backend_iscsi_context (bk);
  for (int tries = 0; tries < 4; tries++)
    {
      struct scsi_task *t
          = iscsi_write16_sync (ctx, backend_iscsi_lun (bk), 0, NULL, 0,
                                (int) bk->align, 0, 0, 0, 0, 0);
      int status = t ? t->status : -1;
      bool ua = t && status == SCSI_STATUS_CHECK_CONDITION
                && t->sense.key == SCSI_SENSE_UNIT_ATTENTION;
      if (t)
        scsi_free_scsi_task (t);
      if (ua)
        continue;
      if (status == SCSI_STATUS_GOOD)
        snprintf (out, outlen, "write allowed");
      else if (status == SCSI_STATUS_RESERVATION_CONFLICT)
        snprintf (out, outlen, "write rejected: RESERVATION CONFLICT");
      else
        {
          snprintf (out, outlen, "volume %s: the probe failed: %s", e->name,
                    iscsi_get_error (ctx));
          return -1;
        }
      return 0;
    }
  snprintf (out, outlen, "volume %s: the probe kept getting UNIT ATTENTION",
            e->name);
  return -1;
#else
  snprintf (out, outlen, "volume %s: built without libiscsi", e->name);
  return -1;
#endif
}

/* --- cowctl fence status --- */

void
fencing_status (struct strbuf *sb, bool json)
{
  uint64_t key = my_key ();
  if (json)
    sb_printf (sb,
               "{\"node\":%" PRIu32 ",\"key\":\"%016" PRIx64 "\","
               "\"fenced\":%s,\"fencer\":%s,\"mode\":\"%s\",\"pending\":[",
               cluster_nodeid (), key, cowd.fenced ? "true" : "false",
               cluster_is_fencer () ? "true" : "false",
               cowd.fencing_manual ? "manual" : "reservations");
  else
    sb_printf (sb,
               "this node:  %" PRIu32 " (key %016" PRIx64 ")%s\nfencer:     "
               "%s\nmode:       %s\n",
               cluster_nodeid (), key, cowd.fenced ? ", FENCED" : "",
               cluster_is_fencer () ? "yes" : "no",
               cowd.fencing_manual ? "manual" : "reservations");
  struct fj_victims vs = { .n = 0 };
  cluster_foreach (fj_find_victims, &vs);
  for (size_t i = 0; i < vs.n; i++)
    {
      const struct fretry *r = fj_retry_find (vs.nodes[i]);
      const char *e = r ? r->err : "";
      if (json)
        {
          sb_printf (sb,
                     "%s{\"node\":%" PRIu32 ",\"running\":%s,"
                     "\"last_error\":",
                     i ? "," : "", vs.nodes[i],
                     fj_running (vs.nodes[i]) ? "true" : "false");
          sb_json_str (sb, e);
          sb_puts (sb, "}");
        }
      else
        sb_printf (sb, "waiting:    node %" PRIu32 "%s%s%s\n", vs.nodes[i],
                   fj_running (vs.nodes[i]) ? " (being fenced)" : "",
                   *e ? ": " : "", e);
    }
  if (json)
    sb_printf (sb, "],\"history\":[");
  uint64_t now = cowd_now_ns ();
  for (size_t i = 0; i < F.nhistory; i++)
    {
      const struct fevent *h = &F.history[i];
      double ago = (double) (now - h->at_ns) / 1e9;
      if (json)
        sb_printf (sb,
                   "%s{\"node\":%" PRIu32 ",\"by\":%" PRIu32 ","
                   "\"how\":\"%s\",\"seconds_ago\":%.3f,\"at_ns\":%" PRIu64
                   ",\"fence_ms\":%.3f}",
                   i ? "," : "", h->node, h->by,
                   h->storage ? "reservation" : "confirmed", ago, h->at_ns,
                   h->fence_ms);
      else
        sb_printf (sb,
                   "fenced:     node %" PRIu32 " by node %" PRIu32 " (%s)"
                   " %.1f s ago\n",
                   h->node, h->by, h->storage ? "reservation" : "confirmed",
                   ago);
    }
  if (json)
    sb_printf (sb, "]}\n");
}
