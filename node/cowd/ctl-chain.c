/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-chain.c: the layer-chain commands: snapshot, snapshots, rollback,
 * reset, merge (the engine's vol-chain.c does the work).
 *
 * A change of the chain needs the volume drained: the command holds the
 * volume (new requests queue), and once nothing is in flight and every
 * bit is durable runs the engine's blocking step, resumes the volume and
 * answers.  So a client sees a pause of one drain plus a few superblock
 * writes, never an error.  A snapshot opens its new layer's device on a
 * worker thread before it holds the volume (an iSCSI login to a target
 * that answers nothing waits up to the reconnect deadline; the volume and
 * the host's others serve meanwhile), then, held, formats it and freezes
 * the top on the loop.  The definition (the store) is untouched: it names
 * the first CoW device, and the chain above it is on disk.
 *
 * In a cluster they run on the owner (the volume active here).  The chain
 * is on the shared disk, so it follows ownership without a message of its
 * own: a host that takes the volume over walks it again from L0 when the
 * volume has snapshots or its top turns out frozen (the engine's
 * chain_refresh), a merge goes on at the new owner from the lower layer's
 * MERGING flag, and fencing walks it from L0 to preempt the victim on
 * every layer (fencing.c).  A new layer is opened with the cluster's
 * options, so this host's key is registered on it before it is written.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cowlog.h"

#include "cowd.h"
#include "ctl.h"

enum chain_op
{
  CHAIN_SNAPSHOT,
  CHAIN_ROLLBACK,
  CHAIN_RESET,
};

struct chain_req
{
  struct ctl_req *req;
  struct vol_entry *e;
  enum chain_op op;
  char *uri, *name;
  bool json;
  /* a snapshot's new layer, opened on a worker thread first */
  char *vname;
  uint64_t size, attach_id;
  uint32_t cs;
  bool direct;
  struct backend_opts bo;
  struct backend *nb; /* open: closed by chain_req_free unless committed */
  int r;
  char err[COW_ERRLEN];
};

static void
chain_req_free (struct chain_req *c)
{
  backend_close (c->nb);
  free (c->vname);
  free (c->uri);
  free (c->name);
  free (c);
}

/* The volume, attached here (and active: owned by this host, for a
 * change); else an answer and NULL. */
static struct vol_entry *
chain_entry (struct ctl_req *req, const char *cmd, const char *name,
             bool change)
{
  struct vol_entry *e = find_or_reply (req, name);
  if (!e)
    return NULL;
  if (!e->vol || e->closing)
    return reply_fmt (req, COW_E_NOT_ATTACHED,
                      "volume %s is not "
                      "attached",
                      e->name),
           NULL;
  if (change && vol_degraded (e->vol))
    return reply_fmt (req, COW_E_DEGRADED,
                      "volume %s is degraded on this "
                      "host (a device failed past its deadline); no %s "
                      "until it is back",
                      e->name, cmd),
           NULL;
  if (change && vol_get_state (e->vol) != VOL_STATE_ACTIVE)
    return reply_fmt (req, COW_E_USAGE,
                      "volume %s: no %s: it is %s, "
                      "not active",
                      e->name, cmd, vol_state_name (vol_get_state (e->vol))),
           NULL;
  return e;
}

static void
chain_reply_freed (struct chain_req *c, char **freed, unsigned nfreed)
{
  struct strbuf sb = STRBUF_INIT;
  const char *what = c->op == CHAIN_RESET ? "reset" : "rolled back to ";
  if (c->json)
    {
      sb_puts (&sb, "{\"name\":");
      sb_json_str (&sb, c->e->name);
      sb_puts (&sb, ",\"snapshot\":");
      sb_json_str_or_null (&sb, c->name);
      sb_puts (&sb, ",\"freed\":[");
      for (unsigned i = 0; i < nfreed; i++)
        {
          sb_puts (&sb, i ? "," : "");
          sb_json_str (&sb, freed[i]);
        }
      sb_puts (&sb, "]}\n");
    }
  else
    {
      sb_printf (&sb, "%s: %s%s\n", c->e->name, what, c->name ? c->name : "");
      for (unsigned i = 0; i < nfreed; i++)
        sb_printf (&sb, "freed: %s\n", freed[i]);
    }
  ctl_reply (c->req, 0, sb_str (&sb));
  sb_free (&sb);
}

/* The sentence for an operation whose drain failed (res < 0). */
void
chain_drain_err (char *err, size_t errlen, const char *name, int res)
{
  if (res == -ECANCELED)
    snprintf (err, errlen,
              "volume %s: cancelled: the volume is being "
              "detached or handed over",
              name);
  else
    snprintf (err, errlen, "volume %s: draining it failed: %s", name,
              strerror (-res));
}

/* Resume the volume and answer (r: the change's result). */
static void
chain_end (struct chain_req *c, int r, const char *err, char **freed,
           unsigned nfreed)
{
  vol_resume_op (c->e->vol);
  if (r < 0)
    reply_fmt (c->req, r, "%s", err);
  else if (c->op != CHAIN_SNAPSHOT)
    chain_reply_freed (c, freed, nfreed);
  else if (c->json)
    reply_fmt (c->req, 0,
               "{\"name\":\"%s\",\"snapshot\":\"%s\","
               "\"top\":\"%s\"}\n",
               c->e->name, c->name, c->uri);
  else
    reply_fmt (c->req, 0, "%s: snapshot %s taken; writes go to %s\n",
               c->e->name, c->name, c->uri);
  for (unsigned i = 0; i < nfreed; i++)
    free (freed[i]);
}

/* The drained volume: change the chain, resume, answer. */
static void
chain_drained (void *opaque, int res)
{
  struct chain_req *c = opaque;
  struct volume *v = c->e->vol;
  char err[COW_ERRLEN] = "", *freed[DSCOW_CHAIN_MAX];
  unsigned nfreed = 0;
  int r = res;
  if (r < 0)
    chain_drain_err (err, sizeof err, c->e->name, r);
  else if (c->op == CHAIN_SNAPSHOT)
    {
      /* What was checked before the open may have changed since. */
      r = vol_snapshot_check (v, c->name, c->uri, true, err, sizeof err);
      if (r == 0)
        {
          r = vol_snapshot_commit (v, c->name, c->nb, err, sizeof err);
          c->nb = NULL; /* the volume's top, or closed */
        }
    }
  else
    r = vol_rollback (v, c->op == CHAIN_ROLLBACK ? c->name : NULL, freed,
                      &nfreed, err, sizeof err);
  chain_end (c, r, err, freed, nfreed);
  chain_req_free (c);
}

int
chain_hold_op (struct ctl_req *req, struct vol_entry *e, vol_done_fn *drained,
               void *opaque)
{
  if (vol_hold_op (e->vol, drained, opaque) == 0)
    return 0;
  reply_fmt (req, COW_E_BUSY,
             "volume %s is held (another operation, a "
             "handoff or a detach is under way); try again",
             e->name);
  return -1;
}

/* Hold the volume for c; its drain runs chain_drained. */
static void
chain_hold (struct chain_req *c)
{
  if (chain_hold_op (c->req, c->e, chain_drained, c) < 0)
    chain_req_free (c);
}

/* On a worker thread: the new layer's device opened and checked; it
 * reads no volume. */
static void
chain_layer_open (void *data)
{
  struct chain_req *c = data;
  c->r = vol_layer_open (c->vname, c->size, c->cs, c->direct, c->uri, &c->bo,
                         &c->nb, c->err, sizeof c->err);
}

/* Back on the loop: the volume, if it is still this attach of it, is
 * held for the commit (the layer's session registered this host's key
 * first: on_login, at backend_start_loop). */
static void
chain_layer_opened (void *data)
{
  struct chain_req *c = data;
  char what[COW_ERRLEN - 128];
  snprintf (what, sizeof what, "the new layer %s", c->uri);
  int r = voldb_opened (c->vname, c->attach_id, what, "new layer ", c->nb, c->r,
                        &c->e, c->err, sizeof c->err);
  if (r < 0)
    {
      reply_fmt (c->req, r, "%s", c->err);
      return chain_req_free (c);
    }
  chain_hold (c);
}

static void
chain_start (struct ctl_req *req, struct vol_entry *e, enum chain_op op,
             const char *uri, const char *name, bool json)
{
  struct chain_req *c = calloc (1, sizeof *c);
  if (!c || (uri && !(c->uri = strdup (uri)))
      || (name && !(c->name = strdup (name))) || !(c->vname = strdup (e->name)))
    {
      if (c)
        chain_req_free (c);
      return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                        e->name);
    }
  c->req = req;
  c->e = e;
  c->op = op;
  c->json = json;
  if (op != CHAIN_SNAPSHOT)
    return chain_hold (c);
  char err[COW_ERRLEN];
  int r = vol_snapshot_check (e->vol, name, uri, false, err, sizeof err);
  if (r < 0)
    {
      reply_fmt (req, r, "%s", err);
      return chain_req_free (c);
    }
  c->size = vol_size (e->vol);
  c->cs = vol_chunk_size (e->vol);
  c->direct = vol_is_direct (e->vol);
  c->attach_id = e->attach_id;
  voldb_backend_opts (&c->bo);
  if (cowd.own->backend_opts)
    cowd.own->backend_opts (&c->bo); /* fencing: our key on the new LUN */
  c->bo.blocking_only = c->bo.loop_later = true;
  cowd_offload (chain_layer_open, chain_layer_opened, c);
}

/* A snapshot name that is free: snapN, N the number of layers on. */
static void
chain_default_name (struct volume *v, char *buf, size_t len)
{
  struct vol_layer_info li[DSCOW_CHAIN_MAX];
  unsigned n = vol_layers (v, li, DSCOW_CHAIN_MAX);
  for (unsigned k = n;; k++)
    {
      bool taken = false;
      snprintf (buf, len, "snap%u", k);
      for (unsigned i = 0; i < n; i++)
        taken |= li[i].name && strcmp (li[i].name, buf) == 0;
      if (!taken)
        return;
    }
}

void
cmd_snapshot (struct ctl_req *req, int argc, char **argv, bool json)
{
  static const struct option opts[] = {
    { "cow", required_argument, NULL, 'c' },
    { "name", required_argument, NULL, 'n' },
    { NULL, 0, NULL, 0 },
  };
  const char *cow = NULL, *name = NULL;
  char def[32], err[COW_ERRLEN];
  int ch;
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long (argc, argv, "", opts, NULL)) != -1)
    switch (ch)
      {
      case 'c':
        cow = optarg;
        break;
      case 'n':
        name = optarg;
        break;
      default:
        return reply_fmt (req, COW_E_USAGE,
                          "snapshot: unknown option "
                          "'%s'",
                          argv[optind - 1]);
      }
  if (optind != argc - 1 || !cow)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = chain_entry (req, "snapshot", argv[optind], true);
  if (!e)
    return;
  if (voldb_check_path (e->name, "new layer", cow, err, sizeof err) < 0)
    return reply_fmt (req, COW_E_BAD_DEVICE, "%s", err);
  const char *user = voldb_cow_user_uri (e->name, cow);
  if (user)
    return reply_fmt (req,
                      -vol_err_cow_taken (err, sizeof err, e->name, cow, user),
                      "%s", err);
  if (!name)
    chain_default_name (e->vol, def, sizeof def);
  chain_start (req, e, CHAIN_SNAPSHOT, cow, name ? name : def, json);
}

void
cmd_merge (struct ctl_req *req, int argc, char **argv, bool json)
{
  char err[COW_ERRLEN];
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = chain_entry (req, "merge", argv[1], true);
  if (!e)
    return;
  int r = vol_merge_start (e->vol, err, sizeof err);
  if (r < 0)
    return reply_fmt (req, r, "%s", err);
  struct strbuf sb = STRBUF_INIT;
  if (json)
    {
      sb_puts (&sb, "{\"name\":");
      sb_json_str (&sb, e->name);
      chain_status_json (&sb, e->vol);
      sb_puts (&sb, "}\n");
    }
  else
    sb_printf (&sb, "%s: merge started\n", e->name);
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

void
chain_status_json (struct strbuf *sb, const struct volume *v)
{
  struct vol_merge m;
  struct vol_layer_info li[DSCOW_CHAIN_MAX];
  vol_merge_info (v, &m);
  sb_printf (sb,
             ",\"layers\":%u,\"merge\":{\"state\":\"%s\","
             "\"percent\":%.1f,\"scanned\":%" PRIu64 ",\"chunks\":%" PRIu64
             ",\"copied\":%" PRIu64 ",\"pass\":%u,\"resumed\":%s,"
             "\"freed\":",
             vol_layers (v, li, DSCOW_CHAIN_MAX),
             m.running ? "running"
             : m.error ? "failed"
                       : "off",
             m.running ? 100.0 * (double) m.scanned / (double) m.chunks : 0.0,
             m.scanned, m.chunks, m.copied, m.pass,
             m.resumed ? "true" : "false");
  sb_json_str_or_null (sb, m.freed);
  sb_puts (sb, ",\"error\":");
  sb_json_str (sb, m.error ? strerror (-m.error) : "");
  sb_puts (sb, "}");
}

void
chain_status_text (struct strbuf *sb, const struct volume *v)
{
  struct vol_merge m;
  struct vol_layer_info li[DSCOW_CHAIN_MAX];
  unsigned n = vol_layers (v, li, DSCOW_CHAIN_MAX);
  vol_merge_info (v, &m);
  if (n > 1)
    sb_printf (sb, "layers:      %u (%u snapshots; cowctl snapshots)\n", n,
               n - 1);
  if (m.running)
    sb_printf (sb,
               "merge:       running%s, %.1f%% (%" PRIu64 " chunks "
               "copied%s)\n",
               m.resumed ? " (started again after an interruption)" : "",
               100.0 * (double) m.scanned / (double) m.chunks, m.copied,
               m.pass ? ", copying what was written meanwhile" : "");
  else if (m.error)
    sb_printf (sb, "merge:       failed: %s\n", strerror (-m.error));
}

void
cmd_rollback (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 3)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = chain_entry (req, "rollback", argv[1], true);
  if (e)
    chain_start (req, e, CHAIN_ROLLBACK, NULL, argv[2], json);
}

void
cmd_reset (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = chain_entry (req, "reset", argv[1], true);
  if (e)
    chain_start (req, e, CHAIN_RESET, NULL, NULL, json);
}

static void
chain_time (uint64_t t, char *buf, size_t len)
{
  time_t tt = (time_t) t;
  struct tm tm;
  if (!t || !gmtime_r (&tt, &tm))
    snprintf (buf, len, "-");
  else
    strftime (buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
chain_layers_json (struct strbuf *sb, const struct vol_entry *e,
                   const struct vol_layer_info *li, unsigned n)
{
  sb_puts (sb, "{\"name\":");
  sb_json_str (sb, e->name);
  sb_puts (sb, ",\"layers\":[");
  for (unsigned i = 0; i < n; i++)
    {
      sb_printf (sb, "%s{\"index\":%u,\"snapshot\":", i ? "," : "", i);
      sb_json_str_or_null (sb, li[i].name);
      sb_puts (sb, ",\"device\":");
      sb_json_str (sb, li[i].uri);
      sb_printf (sb,
                 ",\"chunks\":%" PRIu64 ",\"created\":%" PRIu64
                 ",\"taken\":%" PRIu64 ",\"top\":%s}",
                 li[i].chunks, li[i].created, li[i].frozen,
                 i + 1 == n ? "true" : "false");
    }
  sb_puts (sb, "]}\n");
}

void
cmd_snapshots (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = chain_entry (req, "snapshots", argv[1], false);
  if (!e)
    return;
  struct vol_layer_info li[DSCOW_CHAIN_MAX];
  unsigned n = vol_layers (e->vol, li, DSCOW_CHAIN_MAX);
  struct strbuf sb = STRBUF_INIT;
  if (json)
    chain_layers_json (&sb, e, li, n);
  else
    {
      sb_printf (&sb, "%-5s %-20s %10s %-20s %s\n", "LAYER", "SNAPSHOT",
                 "CHUNKS", "TAKEN", "DEVICE");
      for (unsigned i = 0; i < n; i++)
        {
          char t[32], idx[16];
          chain_time (li[i].frozen, t, sizeof t);
          snprintf (idx, sizeof idx, i + 1 == n ? "top" : "%u", i);
          sb_printf (&sb, "%-5s %-20s %10" PRIu64 " %-20s %s\n", idx,
                     li[i].name ? li[i].name : "-", li[i].chunks, t, li[i].uri);
        }
    }
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}
