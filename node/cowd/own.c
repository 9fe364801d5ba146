/* SPDX-License-Identifier: GPL-2.0-or-later */
/* own.c: cowd's side of the cluster: volumes follow the ownership table.
 *
 * A volume attached on a host that does not own it is READONLY in the
 * engine: every request waits, and the first one asks for ownership
 * (want_owner_cb -> ACQUIRE), which is what a source domain resumed after a
 * failed migration needs.  `attach --incoming` asks at once, which is what
 * the destination of a live migration needs.
 *
 * Handoff, on the owner (on_handoff_request):
 *   hold new requests -> drain those in flight and commit every bit ->
 *   flush the data and mark the superblock clean (generation g, FUA), both
 *   at once -> READONLY -> HANDOFF(vol, to, g)
 * and on the new owner (on_owner with owner == us):
 *   re-read superblock and bitmap (one read) -> check generation g ->
 *   write the new epoch, dirty (FUA) -> ACTIVE -> serve what was waiting.
 *
 * Quorum loss holds every volume this host owns at once (nothing more is
 * acknowledged) until quorum returns; the quorate side may then fence.
 *
 * The lease gate (own_lease_deadline, handed to the engine): a volume
 * acknowledges only while this node serves it under an epoch, is not held
 * for quorum and the cluster's lease holds.  Whatever completes later is
 * parked in the engine; it goes out (vol_confirm) only once quorum and the
 * lease are back in a quorate ring and the table, with everything the group
 * ordered before, still gives the volume to this node at the same epoch;
 * otherwise this node was deposed: fencing_self, and the parked requests
 * fail with EIO.
 *
 * Fenced is terminal for a volume here: no failed handoff, retry or late
 * ownership message makes it active again (the engine refuses too).
 *
 * Everything runs on the main loop; the entries' cluster fields belong to
 * it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "cluster.h"
#include "cowd.h"
#include "loop.h"

/* This node's part in the ownership of one volume: kept here, off the
 * definition (struct vol_entry is configuration; e->own points here). */
struct own_vol
{
  bool asked;       /* an ACQUIRE of ours is under way */
  bool quorum_held; /* held because quorum was lost */
  bool incoming;    /* attached --incoming: take it when free */
  uint32_t handoff_to;
  bool handing_off;   /* on_handoff_request until own_cleaned */
  bool handoff_lease; /* ... waiting for the lease to drain again */
  uint64_t epoch;     /* the epoch we serve under, 0 = none */
  bool taking_over;   /* vol_takeover_async under way */
  uint64_t t_request_ns, t_hold_ns; /* handoff timing */
  bool released; /* detached: our RELEASE sent, perhaps not back yet */
};

/* e's ownership state, made (all zero) on first use: a definition
 * nobody attached here has none.  voldb frees it with the entry. */
static struct own_vol *
own_vol (const struct vol_entry *e)
{
  struct vol_entry *me = (struct vol_entry *) e;
  if (!me->own && !(me->own = calloc (1, sizeof *me->own)))
    abort ();
  return me->own;
}

static void own_want_owner (void *ud, struct volume *v);
static int own_attach (struct vol_entry *e, bool incoming,
                       voldb_attach_fn *done, void *opaque, char *err,
                       size_t errlen);

/* attach --incoming was accepted while this node could not ask (no
 * quorum, or no table yet): ask now. */
static void
own_ask_pending (struct vol_entry *e)
{
  if (e->vol && own_vol (e)->incoming && !own_vol (e)->epoch)
    own_want_owner (e, e->vol);
}
static void own_announce (void);
static void own_taken (void *opaque, int res, const char *err);

/* --- attach --wait-owned: answered when this node serves the volume --- */

struct own_waiter
{
  struct own_waiter *next;
  struct vol_entry *e;
  unsigned timeout_s;
  struct cowd_timer timer;
  own_wait_fn *done;
  void *opaque;
};
static struct own_waiter *own_waiters;

/* This node owns e at the epoch it serves under and serves it now. */
static bool
own_serving (const struct vol_entry *e)
{
  const struct cluster_vol *cv = cluster_lookup (e->name);
  return e->vol && !e->closing && !cowd.fenced && cv
         && cv->owner == cluster_nodeid () && cv->state != CL_FENCING
         && own_vol (e)->epoch && cv->epoch == own_vol (e)->epoch
         && !own_vol (e)->quorum_held
         && vol_get_state (e->vol) == VOL_STATE_ACTIVE && !vol_is_held (e->vol);
}

static void
own_waiter_end (struct own_waiter *w, int res, const char *err)
{
  for (struct own_waiter **p = &own_waiters; *p; p = &(*p)->next)
    if (*p == w)
      {
        *p = w->next;
        break;
      }
  cowd_timer_stop (&w->timer);
  w->done (w->opaque, res, err);
  free (w);
}

/* End the waits on e: served (res 0), or failed with res and err. */
static void
own_wake (struct vol_entry *e, int res, const char *err)
{
  struct own_waiter *w = own_waiters, *next;
  for (; w; w = next)
    {
      next = w->next;
      if (w->e == e && (res < 0 || own_serving (e)))
        own_waiter_end (w, res, err);
    }
}

static bool own_in_sync; /* in own_on_synced */
/* The store held no definition when cowd started; it has synced since. */
static bool own_started_empty, own_synced_once;

/* This node was fenced: every wait fails, and the node asks the group for
 * its table (unless it has just got it), after which it recovers
 * (own_recover_fenced). */
void
own_forget_epoch (struct vol_entry *e)
{
  if (e->own)
    e->own->epoch = 0;
}

void
own_wake_fenced (void)
{
  while (own_waiters)
    {
      char why[COW_ERRLEN];
      snprintf (why, sizeof why,
                "volume %s: this node was fenced; it "
                "serves again once it has the group's table (or cowd is "
                "restarted)",
                own_waiters->e->name);
      own_waiter_end (own_waiters, -COW_E_FENCED, why);
    }
  if (!own_in_sync && !cowd.fenced_stay && cluster_resync () < 0)
    qb_log (LOG_ERR,
            "cluster: node %u cannot ask the group for its table; "
            "it stays fenced until cowd is restarted or the membership "
            "changes",
            cluster_nodeid ());
}

/* --- a fenced agent back on the group's table --- */

static void own_reattach (void);
static bool own_recovering;
static unsigned own_recover_left;

static void
own_recover_closed (void *opaque, int res)
{
  if (--own_recover_left > 0)
    return;
  own_recovering = false;
  cowd.fenced = false;
  fencing_forget_registrations ();
  qb_log (LOG_WARNING,
          "fence: node %u has the group's table again after it "
          "was fenced: its volumes were closed, and it attaches them again "
          "as a restarted agent would",
          cluster_nodeid ());
  own_reattach ();
  fencing_kick ();
}

/* Fenced, and now on a current table of a quorate group that holds
 * nothing in fencing for this node (the group has done with it): close
 * every volume, with its sessions and its clients, so that nothing of
 * before the fence can reach a LUN, and start again like a restarted
 * agent (new sessions register afresh).  In a two_node cluster this is how
 * the loser of a fence race comes back without an operator. */
static void
own_recover_fenced (void)
{
  if (!cowd.fenced || cowd.fenced_stay || own_recovering || !cluster_synced ()
      || !cluster_quorate () || cluster_fence_pending (cluster_nodeid ()))
    return;
  own_recovering = true;
  own_recover_left = 1; /* until every detach is started */
  VOLDB_FOR_LIVE (e)
    if (e->vol && !e->closing)
      {
        own_recover_left++;
        own_vol (e)->epoch = 0;
        own_vol (e)->quorum_held = false;
        voldb_detach (e, own_recover_closed, NULL);
      }
  own_recover_closed (NULL, 0);
}

static void
own_waiter_expired (void *data)
{
  struct own_waiter *w = data;
  struct vol_entry *e = w->e;
  const struct cluster_vol *cv = cluster_lookup (e->name);
  char err[COW_ERRLEN];
  int code = -COW_E_TIMEOUT;
  if (cv && cv->state == CL_FENCING)
    snprintf (err, sizeof err,
              "volume %s: its owner, node %u, left the "
              "cluster and was not fenced within %u s",
              e->name, cv->fenced_node, w->timeout_s);
  else if (!cluster_quorate ())
    snprintf (err, sizeof err,
              "volume %s: this node was not quorate "
              "within %u s, so it could not take ownership",
              e->name, w->timeout_s);
  else if (e->vol && vol_degraded (e->vol))
    {
      code = -COW_E_DEGRADED;
      snprintf (err, sizeof err,
                "volume %s is degraded on this host (a "
                "device failed past its deadline); it cannot serve it",
                e->name);
    }
  else
    snprintf (err, sizeof err,
              "volume %s: node %u did not hand it over "
              "within %u s (cluster state %s, local state %s)",
              e->name, cv ? cv->owner : 0, w->timeout_s,
              cv ? cluster_state_name (cv->state) : "unknown",
              e->vol ? vol_state_name (vol_get_state (e->vol)) : "closed");
  own_waiter_end (w, code, err);
}

static int
own_wait_owned (struct vol_entry *e, unsigned timeout_s, own_wait_fn *done,
                void *opaque)
{
  if (own_serving (e))
    {
      done (opaque, 0, NULL);
      return 0;
    }
  struct own_waiter *w = calloc (1, sizeof *w);
  if (!w)
    return -ENOMEM;
  *w = (struct own_waiter){ .next = own_waiters,
                            .e = e,
                            .timeout_s = timeout_s,
                            .done = done,
                            .opaque = opaque };
  if (cowd_timer_arm (&w->timer, (uint64_t) timeout_s * 1000000000ULL,
                      own_waiter_expired, w)
      < 0)
    {
      free (w);
      return -ENOMEM;
    }
  own_waiters = w;
  return 0;
}

static uint64_t
own_lease_deadline (void *ud)
{
  const struct vol_entry *e = ud;
  if (cowd.fenced || !own_vol (e)->epoch || own_vol (e)->quorum_held)
    return 0;
  return cluster_lease_deadline_ns ();
}

/* The table, after everything the group ordered before this point, still
 * gives e to this node at the epoch it serves under. */
static bool
own_confirmed (const struct vol_entry *e)
{
  const struct cluster_vol *cv = cluster_lookup (e->name);
  return cv && cv->owner == cluster_nodeid () && cv->epoch == own_vol (e)->epoch
         && cv->state != CL_FENCING;
}

static struct vol_entry *
own_entry (const char *vol)
{
  struct vol_entry *e = voldb_find (vol);
  return e && e->vol && !e->closing ? e : NULL;
}

static void
own_undefine_synced (void *ud, int err)
{
  char *name = ud;
  if (err)
    qb_log (LOG_ERR,
            "cluster: %s: deleted in the cluster, but making its removal "
            "durable in %s failed: %s",
            name ? name : "a volume", cowd.state_dir, strerror (err));
  free (name);
}

/* Deleted in the cluster: forget e here.  Durable, for a cluster that
 * restarts whole must not define it again from this store; but the fsync
 * runs on a thread, not on the loop that serves this host's I/O (nobody
 * waits for it). */
static void
own_forget (struct vol_entry *e)
{
  if (voldb_unstore_deferred (e) == 0)
    voldb_sync_async (own_undefine_synced, strdup (e->name));
  voldb_remove (e);
}

static void
own_on_define (void *ud, const struct cluster_voldef *def, bool defined)
{
  struct vol_entry *e = voldb_find (def->name);
  if (defined && !e)
    {
      /* Its device identified later, in slices: a stat in the apply of
       * each definition was a fifth of a receiving host's CPU for them
       * (bench/scale 10,000, perf). */
      e = voldb_add (def->name, def->base, def->cow, def->chunk_size,
                     (enum dscow_commit) def->commit, true);
      if (e)
        {
          voldb_set_ident (e, def->cow_ident);
          e->exclusive = def->exclusive;
          voldb_store_lazy (e); /* in the batch's transaction, if any */
        }
      qb_log (LOG_DEBUG, "cluster: %s: defined", def->name);
    }
  else if (!defined && e && e->opening)
    e->gone = true; /* forgotten when its open ends (own_attach_opened) */
  else if (!defined && e && !e->vol && !e->creating)
    own_forget (e);
}

/* A state transfer applies its definitions in batches, and a turn of CPG
 * messages its definitions, into one transaction, lazily synced (the
 * cluster gives them back after a power cut; a durable write, such as an
 * undefine's, commits it first: voldb.c), which a turn leaves open a
 * little for the next ones (voldb_batch_pause), whether it ended early
 * for I/O or found no more messages: a creating host's DEFINE_MANY
 * comes every 15-20 ms at full speed, and a commit each was a tenth of
 * a receiving host's loop (perf, bench/scale 10,000). */
static void
own_on_batch (void *ud, enum cluster_batch what)
{
  static bool reserved;
  bool begin = what == CLUSTER_BATCH_BEGIN;
  if (begin && !reserved && cluster_table_size () > 0)
    reserved = voldb_reserve (cluster_table_size ()) == 0;
  if (begin)
    voldb_batch_begin ();
  else
    voldb_batch_pause ();
}

static bool
own_io_waiting (void *ud)
{
  return cowd_io_waiting ();
}

static double own_served_ms[1024], own_held_ms[1024];
static unsigned own_nserved, own_nheld;

struct own_times
own_handoff_times (void)
{
  return (struct own_times){ own_served_ms, own_held_ms, own_nserved,
                             own_nheld };
}

static void
own_record (double *samples, unsigned *n, uint64_t *since)
{
  if (*since && *n < 1024)
    samples[(*n)++] = (double) (cowd_now_ns () - *since) / 1e6;
  *since = 0;
}

static void
own_on_owner (void *ud, const char *vol, uint32_t owner, uint64_t epoch,
              uint64_t generation)
{
  struct vol_entry *e = own_entry (vol);
  if (!e)
    return;
  own_vol (e)->asked = false;
  if (owner != cluster_nodeid () && own_vol (e)->epoch)
    {
      /* We served it and it went elsewhere without our handoff: the
       * group fenced us or confirmed us down while we were cut off. */
      fencing_self ("the group moved a volume it served without a "
                    "handoff");
      return;
    }
  if (cowd.fenced)
    return; /* terminal until cowd restarts */
  if (owner == 0 && !cowd.fenced && vol_get_state (e->vol) == VOL_STATE_READONLY
      && (own_vol (e)->incoming || vol_has_waiters (e->vol)))
    {
      own_want_owner (e, e->vol); /* released or fenced: take it now */
      return;
    }
  if (owner != cluster_nodeid ())
    {
      if (vol_get_state (e->vol) == VOL_STATE_ACTIVE)
        {
          qb_log (LOG_WARNING,
                  "cluster: %s: node %u owns it now; this node "
                  "stops writing",
                  vol, owner);
          vol_set_state (e->vol, VOL_STATE_READONLY);
        }
      own_vol (e)->epoch = 0;
      return;
    }
  if ((own_vol (e)->epoch == epoch
       && vol_get_state (e->vol) == VOL_STATE_ACTIVE)
      || own_vol (e)->taking_over)
    return; /* a takeover under way ends in own_taken */
  own_vol (e)->taking_over = true;
  vol_takeover_async (e->vol, epoch, owner, generation, own_taken, e);
}

/* The takeover read superblock and bitmap and wrote our epoch (or
 * failed).  The table may have moved on meanwhile (a fence, a handoff
 * asked at once): serve only if it still names this node at this epoch. */
static void
own_taken (void *opaque, int res, const char *err)
{
  struct vol_entry *e = opaque;
  const struct cluster_vol *cv = cluster_lookup (e->name);
  uint64_t epoch = vol_super (e->vol)->epoch;
  own_vol (e)->taking_over = false;
  if (res < 0)
    {
      qb_log (LOG_ERR, "cluster: %s: taking over failed: %s", e->name, err);
      char why[COW_ERRLEN];
      snprintf (why, sizeof why, "volume %s: taking it over failed: %s",
                e->name, err);
      own_wake (e, -COW_E_HANDOFF_FAILED, why);
      return;
    }
  if (e->closing || cowd.fenced || !cv || cv->owner != cluster_nodeid ()
      || cv->epoch != epoch)
    {
      qb_log (LOG_WARNING,
              "cluster: %s: ownership moved on during the "
              "takeover at epoch %" PRIu64 "; not serving",
              e->name, epoch);
      vol_set_state (e->vol, VOL_STATE_READONLY);
      if (cv && cv->owner == cluster_nodeid () && !e->closing)
        own_on_owner (NULL, e->name, cv->owner, cv->epoch, cv->generation);
      return;
    }
  own_vol (e)->epoch = epoch;
  own_vol (e)->incoming = false; /* attach --incoming's wish is met */
  own_vol (e)->handing_off = own_vol (e)->handoff_lease = false;
  qb_log (LOG_INFO,
          "cluster: %s: owned by this node, epoch %" PRIu64
          ", generation %" PRIu64,
          e->name, epoch, vol_generation (e->vol));
  own_record (own_served_ms, &own_nserved, &own_vol (e)->t_request_ns);
  own_vol (e)->quorum_held = false;
  if (vol_is_held (e->vol))
    return; /* a handoff asked meanwhile: it drains */
  if (!cluster_quorate ())
    {
      /* lost meanwhile: as own_on_quorum does */
      own_vol (e)->quorum_held = true;
      vol_hold (e->vol, NULL, NULL);
      return;
    }
  vol_resume (e->vol);
  own_wake (e, 0, NULL);
}

static void own_drained (void *opaque, int res);

/* A handoff holds e (a close that took the hold over ends it). */
static bool
own_handing_off (const struct vol_entry *e)
{
  return own_vol (e)->handing_off && vol_is_held (e->vol);
}

/* A handoff's drain or clean mark refused for the lease (it ran out: a
 * membership change, this agent stopped for a while): the volume stays
 * held and the handoff goes on once the lease is back (own_serve_again),
 * instead of being given up while the group waits for it. */
static bool
own_handoff_waits (struct vol_entry *e, int r)
{
  if (r != -EACCES || !own_handing_off (e) || cowd.fenced
      || vol_get_state (e->vol) == VOL_STATE_FENCED || !own_vol (e)->epoch)
    return false;
  if (vol_serving (e->vol))
    {
      /* Back before this answer came: drain again now. */
      vol_hold (e->vol, own_drained, e);
      return true;
    }
  if (!own_vol (e)->handoff_lease)
    qb_log (LOG_NOTICE,
            "cluster: %s: the handoff to node %u waits for this node's "
            "lease, which ran out",
            e->name, own_vol (e)->handoff_to);
  own_vol (e)->handoff_lease = true;
  return true;
}

static void
own_cleaned (void *opaque, int r)
{
  struct vol_entry *e = opaque;
  uint64_t gen = vol_generation (e->vol);
  if (own_handoff_waits (e, r))
    return;
  own_vol (e)->handing_off = false;
  if (r < 0 && (cowd.fenced || vol_get_state (e->vol) == VOL_STATE_FENCED))
    {
      qb_log (LOG_ERR,
              "cluster: %s: cannot mark the volume clean: this "
              "node was fenced; it stays fenced",
              e->name);
      return;
    }
  if (r < 0)
    {
      /* The group hears that the handoff failed, so that the table does
       * not say handing-off for ever and the requester is answered. */
      qb_log (LOG_ERR,
              "cluster: %s: cannot hand it to node %u: making it clean on "
              "its CoW device failed (%s); this node keeps serving it",
              e->name, own_vol (e)->handoff_to, strerror (-r));
      cluster_handoff_refuse (e->name, own_vol (e)->handoff_to, -r);
      vol_set_state (e->vol, VOL_STATE_ACTIVE);
      vol_resume (e->vol);
      return;
    }
  vol_set_state (e->vol, VOL_STATE_READONLY);
  own_vol (e)->epoch = 0;
  qb_log (LOG_INFO,
          "cluster: %s: handing off to node %u at generation %" PRIu64, e->name,
          own_vol (e)->handoff_to, gen);
  cluster_handoff (e->name, own_vol (e)->handoff_to, gen);
  own_record (own_held_ms, &own_nheld, &own_vol (e)->t_hold_ns);
  /* Whatever waits now stays waiting and asks for ownership back. */
  vol_resume (e->vol);
}

static void
own_drained (void *opaque, int res)
{
  struct vol_entry *e = opaque;
  if (!e->vol)
    return;
  if (res < 0)
    own_cleaned (e, res); /* the drain could not commit every bit */
  else
    vol_mark_clean_async (e->vol, own_cleaned, e);
}

static void
own_on_handoff_request (void *ud, const char *vol, uint32_t to)
{
  struct vol_entry *e = own_entry (vol);
  if (!e)
    {
      /* Owned here but not attached (an agent restarted): nothing to
       * flush; the superblock is whatever it is, so no generation check. */
      cluster_handoff (vol, to, 0);
      return;
    }
  own_vol (e)->handoff_to = to;
  own_vol (e)->handing_off = true;
  own_vol (e)->handoff_lease = false;
  own_vol (e)->t_hold_ns = cowd_now_ns ();
  vol_hold (e->vol, own_drained, e);
}

static void
own_on_fencing (void *ud, const char *vol, uint32_t node)
{
  qb_log (LOG_WARNING,
          "cluster: %s: node %u left while owning it: fencing;"
          " nobody writes it until node %u is fenced%s",
          vol, node, node,
          cowd.fencing_manual ? " (fencing = manual: cowctl fence NODE or "
                                "cowctl fence confirm NODE)"
                              : "");
  fencing_kick ();
}

/* An attach again of what was attached before this agent stopped: what
 * did not work is kept for status. */
static void
own_reattached (void *opaque, int res, const char *err)
{
  struct vol_entry *e = opaque;
  if (res < 0)
    voldb_attach_failed (e, err);
}

/* Attach again what was attached before this agent stopped. */
static void
own_reattach (void)
{
  if (cowd.fenced)
    return; /* own_recover_fenced calls it again */
  VOLDB_FOR_LIVE (e)
    {
      char err[COW_ERRLEN];
      if (e->opening)
        continue;
      if (e->attached && !e->vol
          && own_attach (e, false, own_reattached, e, err, sizeof err) < 0)
        voldb_attach_failed (e, err);
      else
        own_ask_pending (e);
    }
}

static void
own_on_fenced (void *ud, uint32_t node, uint32_t by, bool storage)
{
  fencing_on_fenced (node, by, storage);
  /* This node's previous agent was fenced, not this one: what it could
   * not attach at start, waiting for that fence, it attaches now. */
  if (node == cluster_nodeid () && !cowd.fenced)
    own_reattach ();
  own_recover_fenced ();
}

/* Quorum and the lease are back and the table confirmed e: serve what
 * waited and send the replies parked past the lease. */
static void
own_serve_again (struct vol_entry *e)
{
  bool held = own_vol (e)->quorum_held;
  own_vol (e)->quorum_held = false;
  if (own_handing_off (e))
    {
      /* The hold is the handoff's: it goes on, never resumes here. */
      vol_confirm (e->vol);
      if (own_vol (e)->handoff_lease)
        {
          own_vol (e)->handoff_lease = false;
          vol_hold (e->vol, own_drained, e);
        }
      return;
    }
  if (held)
    vol_resume (e->vol);
  vol_confirm (e->vol);
  own_wake (e, 0, NULL);
}

/* Quorum is back: a volume that was attached when this agent stopped,
 * and that it could not attach at start for want of quorum (a node that
 * restarted cut off, or before its ring was quorate again), is attached
 * now, as at start. */
static void
own_reattached_quorate (void *opaque, int res, const char *err)
{
  struct vol_entry *e = opaque;
  if (res < 0)
    {
      qb_log (LOG_ERR, "cowd: %s: not re-attached once quorate: %s", e->name,
              err);
      voldb_set_error (e, err);
    }
  else
    qb_log (LOG_NOTICE, "cowd: %s: re-attached now that this node is quorate",
            e->name);
}

static void
own_reattach_quorate (struct vol_entry *e)
{
  char err[COW_ERRLEN];
  if (cowd.fenced || !e->attached || e->closing || e->opening)
    return;
  int r = own_attach (e, false, own_reattached_quorate, e, err, sizeof err);
  if (r <= 0)
    own_reattached_quorate (e, r, err);
}

static void
own_on_quorum (void *ud, bool quorate)
{
  VOLDB_FOR_LIVE (e)
    {
      if (!e->vol && quorate && cluster_synced ())
        own_reattach_quorate (e);
      if (!e->vol || e->closing)
        continue;
      if (!quorate && own_vol (e)->epoch)
        vol_drop_writes (e->vol);
      if (!quorate && vol_get_state (e->vol) == VOL_STATE_ACTIVE)
        {
          own_vol (e)->quorum_held = true;
          if (!own_handing_off (e)) /* else held with its drain */
            vol_hold (e->vol, NULL, NULL);
        }
      else if (quorate && cluster_synced () && own_vol (e)->epoch
               && own_confirmed (e))
        {
          /* The lease is back in a quorate ring, and nothing the group
           * ordered before it took the volume away. */
          own_serve_again (e);
        }
      else if (quorate && cluster_synced ())
        own_ask_pending (e);
    }
  if (quorate)
    fencing_on_standing ();
  own_recover_fenced ();
  fencing_kick ();
}

static void
own_on_error (void *ud, const char *vol, int code, const char *sentence)
{
  struct vol_entry *e = voldb_find (vol);
  if (e)
    own_vol (e)->asked = false;
  qb_log (LOG_ERR, "cluster: %s", sentence);
  /* A wait for the volume (attach --wait-owned) ends with the refusal,
   * except one that waits through a fence. */
  if (e && code != COW_E_HELD)
    own_wake (e, -code, sentence);
}

/* After a merge: a volume we served that the table gives to someone else
 * (or holds in fencing for us) means the quorate side fenced us; one that
 * is still ours serves again. */
static void
own_reconcile (void)
{
  uint32_t me = cluster_nodeid ();
  VOLDB_FOR_LIVE (e)
    {
      if (!e->vol || e->closing || !own_vol (e)->epoch)
        continue;
      const struct cluster_vol *cv = cluster_lookup (e->name);
      if (!cv || cv->owner != me || cv->state == CL_FENCING
          || cv->epoch != own_vol (e)->epoch)
        {
          fencing_self ("the quorate side took its volumes while it was "
                        "cut off");
          return;
        }
      if (cluster_quorate ())
        {
          own_serve_again (e);
        }
    }
}

static void
own_on_synced (void *ud)
{
  probe_mark_synced ();
  voldb_checkpoints_hold (false);
  fencing_on_synced ();
  own_in_sync = true; /* a fence found here needs no new table */
  own_reconcile ();
  own_in_sync = false;
  /* Re-announce our volumes (a whole-cluster restart starts empty), then
   * serve again what was attached before this agent stopped.  Nothing to
   * announce (and no lookup of each of 100,000 definitions in the table)
   * when the table came as states over all of them, or at the first sync
   * of an agent that started with an empty store: what it holds came
   * from the table, or was defined in the group when it was created. */
  if (!cluster_adopted_local () && !(own_started_empty && !own_synced_once))
    own_announce ();
  own_synced_once = true;
  own_reattach ();
  notify_ready_part (NOTIFY_VOLUMES);
  voldb_keys_start ();
  fencing_on_standing ();
  own_recover_fenced ();
  fencing_kick ();
}

/* Membership changed: this node may have become the fencer, or a node
 * may wait to be fenced now. */
static void
own_on_members (void *ud)
{
  fencing_kick ();
}

static void
own_want_owner (void *ud, struct volume *v)
{
  struct vol_entry *e = ud;
  if (own_vol (e)->asked || !cluster_quorate () || cowd.fenced)
    return; /* a fenced node asks for nothing */
  own_vol (e)->asked = true;
  own_vol (e)->t_request_ns = cowd_now_ns ();
  if (cluster_acquire (e->name) < 0)
    own_vol (e)->asked = false;
}

void
own_note_request (struct vol_entry *e)
{
  own_vol (e)->t_request_ns = cowd_now_ns ();
}

/* s into a field of size bytes, cut to fit (a table that comes as
 * states only calls this for every volume: no snprintf). */
static void
own_field (char *field, size_t size, const char *s)
{
  size_t n = s ? strnlen (s, size - 1) : 0;
  if (n)
    memcpy (field, s, n);
  field[n] = '\0';
}

static void
own_def (const struct vol_entry *e, struct cluster_voldef *d)
{
  d->chunk_size = e->chunk_size;
  d->commit = e->commit;
  d->exclusive = e->exclusive;
  own_field (d->name, sizeof d->name, e->name);
  own_field (d->base, sizeof d->base, e->base);
  own_field (d->cow, sizeof d->cow, e->cow);
  own_field (d->cow_ident, sizeof d->cow_ident, e->cow_ident);
}

/* One DEFINE, or DEFINE_MANY for a create --from's turn: a message per
 * definition was a CPG message, a dispatch and a store transaction per
 * definition on every other host, and three corosyncs' work each. */
static void
own_define (struct vol_entry *const *e, size_t n)
{
  enum
  {
    MAX = 32
  };
  struct cluster_voldef d[MAX];
  if (n == 1)
    {
      own_def (e[0], &d[0]);
      cluster_define (&d[0]);
      return;
    }
  for (size_t i = 0; i < n;)
    {
      size_t k = 0;
      while (i < n && k < MAX)
        own_def (e[i++], &d[k++]);
      cluster_define_many (d, k);
    }
}

/* The definitions the table lacks, a few hundred to a message. */
static void
own_announce (void)
{
  enum
  {
    CHUNK = 512
  };
  struct cluster_voldef *defs = malloc (CHUNK * sizeof *defs);
  size_t n = 0, total = 0;
  if (!defs)
    abort ();
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    {
      /* One being created is told by its create, once durable: a sync
       * while its device is formatted must not define it in the group
       * (a format that fails would leave the group a definition). */
      if (e->creating || cluster_lookup (e->name))
        continue;
      own_def (e, &defs[n++]);
      if (n == CHUNK || !e->next)
        {
          cluster_define_many (defs, n);
          total += n;
          n = 0;
        }
    }
  if (n)
    cluster_define_many (defs, n);
  total += n;
  free (defs);
  if (total)
    qb_log (LOG_INFO,
            "cluster: defined %zu volumes of this node's store in "
            "the group",
            total);
}

/* An attach, once its devices are open (on a thread): the volume waits,
 * read-only, until the group gives it to this node. */
struct own_attach_ctx
{
  struct vol_entry *e;
  bool incoming;
  voldb_attach_fn *done;
  void *opaque;
};

static void
own_attach_opened (void *opaque, int res, const char *err)
{
  struct own_attach_ctx *c = opaque;
  struct vol_entry *e = c->e;
  if (res == 0)
    {
      const struct cluster_vol *cv = cluster_lookup (e->name);
      vol_set_want_owner_cb (e->vol, own_want_owner, e);
      vol_set_lease (e->vol, own_lease_deadline, e);
      own_vol (e)->incoming = c->incoming;
      if (!(cv && cv->state == CL_FENCING)) /* else: once it is fenced */
        {
          own_vol (e)->asked = false; /* a new attach asks again */
          own_want_owner (e, e->vol);
        }
    }
  c->done (c->opaque, res, err);
  if (e->gone)
    own_forget (e); /* deleted in the cluster meanwhile */
  free (c);
}

/* 1: the devices open on a thread, done comes later; 0: attached already;
 * or a code with its sentence in err. */
static int
own_attach (struct vol_entry *e, bool incoming, voldb_attach_fn *done,
            void *opaque, char *err, size_t errlen)
{
  const struct cluster_vol *cv = cluster_lookup (e->name);
  if (e->own)
    e->own->released = false;
  if (e->vol)
    {
      /* Attached already (a source whose domain came back, or a host
       * that lost it): --incoming asks for it, as a first attach does. */
      if (incoming && !own_vol (e)->epoch && !cowd.fenced && !e->closing)
        {
          own_vol (e)->incoming = true;
          if (!cv || cv->state != CL_FENCING)
            {
              own_vol (e)->asked = false;
              own_want_owner (e, e->vol);
            }
        }
      return 0;
    }
  uint32_t me = cluster_nodeid ();
  if (cowd.fenced)
    {
      snprintf (err, errlen,
                "volume %s: this node was fenced; restart cowd "
                "before it serves again",
                e->name);
      return -COW_E_FENCED;
    }
  if (cv && cv->state == CL_FENCING && !incoming)
    {
      snprintf (err, errlen,
                "volume %s waits for node %u to be fenced "
                "(attach --incoming waits for it; cowctl fence confirm %u "
                "if it is down)",
                e->name, cv->fenced_node, cv->fenced_node);
      return -COW_E_HELD;
    }
  if (cv && cv->owner && cv->owner != me && !incoming)
    {
      snprintf (err, errlen,
                "volume %s is owned by node %u; attach it with "
                "--incoming (live migration) or use cowctl migrate",
                e->name, cv->owner);
      return -COW_E_NOT_OWNER;
    }
  /* --incoming waits for the volume anyway: it waits for quorum too (the
   * request goes out when quorum is back: own_on_quorum). */
  if (!cluster_quorate () && !incoming)
    {
      snprintf (err, errlen,
                "volume %s: this node is not quorate; it cannot "
                "take ownership",
                e->name);
      return -COW_E_NO_QUORUM;
    }
  struct own_attach_ctx *c = malloc (sizeof *c);
  if (!c)
    {
      snprintf (err, errlen, "volume %s: out of memory", e->name);
      return -COW_E_INTERNAL;
    }
  *c = (struct own_attach_ctx){ e, incoming, done, opaque };
  int r = voldb_attach_async (e, own_attach_opened, c, err, errlen);
  if (r <= 0)
    free (c); /* failed, or open already (a race: nothing to do) */
  return r;
}

struct own_detach_ctx
{
  struct vol_entry *e;
  vol_done_fn *done;
  void *opaque;
};

static void
own_detach_drained (void *opaque, int res)
{
  struct own_detach_ctx *c = opaque;
  struct vol_entry *e = c->e;
  if (res == 0 && vol_get_state (e->vol) == VOL_STATE_ACTIVE)
    {
      /* A superblock that could not be marked clean is released without
       * a generation: the next owner takes it as its last commit left it
       * (every bit is durable after the drain), as after a failover. */
      uint64_t gen = 0;
      if (vol_release (e->vol) == 0)
        gen = vol_generation (e->vol);
      else
        qb_log (LOG_ERR,
                "cluster: %s: cannot mark the volume clean at "
                "detach; releasing it without a generation check",
                e->name);
      own_vol (e)->released = cluster_release (e->name, gen) == 0;
      own_vol (e)->epoch = 0;
    }
  fencing_forget_lun (vol_cow_backend (e->vol)->uri);
  voldb_detach (e, c->done, c->opaque);
  free (c);
}

static void
own_detach (struct vol_entry *e, vol_done_fn *done, void *opaque)
{
  struct own_detach_ctx *c = malloc (sizeof *c);
  if (!c)
    abort ();
  *c = (struct own_detach_ctx){ e, done, opaque };
  char why[COW_ERRLEN];
  snprintf (why, sizeof why,
            "volume %s was detached while it waited for "
            "ownership",
            e->name);
  own_wake (e, -COW_E_NOT_ATTACHED, why);
  vol_hold (e->vol, own_detach_drained, c);
}

/* delete in a cluster: the whole group forgets the volume (UNDEFINE; the
 * others drop their definition in own_on_define), if nobody owns it.
 * Sent even when the table lacks it: this node's own definition of it may
 * not have come back yet (a delete right after create), and would then
 * define it again everywhere, here too; after it, in the group's order,
 * the UNDEFINE removes it (one of a volume never defined does nothing). */
static int
own_undefine (struct vol_entry *e, char *err, size_t errlen)
{
  const struct cluster_vol *cv = cluster_lookup (e->name);
  if (!cluster_quorate ())
    {
      snprintf (err, errlen,
                "volume %s: deleting it needs a quorate "
                "partition (the others would keep it)",
                e->name);
      return COW_E_NO_QUORUM;
    }
  /* Detached here (delete refuses an attached volume), and the table
   * does not say so yet: our RELEASE is on its way, and the UNDEFINE goes
   * after it (a delete right after a detach). */
  bool released = cv && cv->owner == cluster_nodeid ()
                  && cv->state != CL_FENCING && e->own && e->own->released;
  if (cv && cv->state != CL_UNOWNED && !released)
    {
      snprintf (err, errlen,
                "volume %s is owned by node %u; detach it there "
                "before deleting it",
                e->name, cv->state == CL_FENCING ? cv->fenced_node : cv->owner);
      return COW_E_ATTACHED;
    }
  if (cluster_undefine (e->name) < 0)
    {
      snprintf (err, errlen,
                "volume %s: cannot tell the group to delete it "
                "(corosync)",
                e->name);
      return COW_E_UNREACHABLE;
    }
  return 0;
}

static bool
own_facts (const struct vol_entry *e, struct own_facts *f)
{
  const struct cluster_vol *cv = cluster_lookup (e->name);
  if (!cv)
    return false;
  *f = (struct own_facts){ .state = cluster_state_name (cv->state),
                           .owner = cv->owner,
                           .requester = cv->requester,
                           .fenced_node = cv->fenced_node,
                           .local = cluster_nodeid (),
                           .epoch = cv->epoch,
                           .bouncing = cv->bouncing,
                           .exclusive = cv->def.exclusive };
  return true;
}

/* A CoW on a block device (open-iscsi) registers through SG_IO. */
static void
own_opened (struct vol_entry *e)
{
  fencing_attach_blockdev (vol_cow_backend (e->vol));
}

static const struct own_ops own_cluster_ops = {
  .attach = own_attach,
  .detach = own_detach,
  .defined = own_define,
  .wait_owned = own_wait_owned,
  .facts = own_facts,
  .backend_opts = fencing_backend_opts,
  .undefine = own_undefine,
  .format_opts = fencing_format_opts,
  .opened = own_opened,
};

void
own_stop (void)
{
  cluster_stop ();
}

/* cluster_callbacks.local_def: a table that comes as states only takes
 * its definitions from here. */
static bool
own_local_def (void *ud, const char *name, struct cluster_voldef *def)
{
  const struct vol_entry *e = voldb_find (name);
  if (e)
    own_def (e, def);
  return e != NULL;
}

/* What this node holds, for the group to compare with its table. */
static void
own_set_local (void)
{
  struct cluster_digest d = { 0 };
  struct cluster_voldef def;
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    {
      own_def (e, &def);
      cluster_digest_add (&d, &def);
    }
  own_started_empty = d.count == 0;
  cluster_set_local (&d);
}

int
own_start (char *err, size_t errlen)
{
  static const struct cluster_callbacks cb = {
    .on_define = own_on_define,
    .on_batch = own_on_batch,
    .io_waiting = own_io_waiting,
    .on_owner = own_on_owner,
    .on_handoff_request = own_on_handoff_request,
    .on_fencing = own_on_fencing,
    .on_fenced = own_on_fenced,
    .on_quorum = own_on_quorum,
    .on_error = own_on_error,
    .on_synced = own_on_synced,
    .on_members = own_on_members,
    .local_def = own_local_def,
  };
  cluster_set_lease (cowd.quorum_loss_timeout_ms);
  own_set_local ();
  voldb_checkpoints_hold (true); /* until synced */
  int r = cluster_start (cowd_loop (), cowd.cluster_name, &cb, NULL);
  if (r < 0)
    {
      snprintf (err, errlen, "cannot join cluster %s: %s", cowd.cluster_name,
                r == -ENOTCONN ? "corosync does not run on this host, or "
                                 "refused the connection"
                               : strerror (-r));
      return -1;
    }
  cowd.clustered = true;
  cowd.own = &own_cluster_ops;
  return fencing_start (err, errlen);
}
