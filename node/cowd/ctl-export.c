/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-export.c: `export NAME --to DEVICE [--rate MB/s]` and `export NAME
 * --cancel`, and the export's part of status and stats (the engine's
 * vol-export.c does the work).
 *
 * Start: the target is checked against every definition (the base or the
 * CoW device of any volume, a layer of any attached one: refused) and by
 * the engine (not the volume's own devices), then opened on a worker
 * thread (cowd_offload: an iSCSI login to a target that answers nothing
 * waits up to the reconnect deadline, and on the loop every volume of the
 * host waited with it) and checked (at least the volume's size).  Back on
 * the loop the volume is checked again (still this attach of it:
 * voldb_opened), held and drained (vol_hold_op) so that the
 * export starts at a point where no write is in flight, and resumed.  The
 * answer comes then: the export runs on in the background; cowctl follows
 * it through `stats NAME --json` (its "export" object, by id).  While one
 * export's target opens, another export of the volume is refused (busy).
 *
 * Only the owner exports (the volume ACTIVE here, not held): a cowd that
 * is not the owner answers not-owner, as hydrate does.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowlog.h"

#include "cowd.h"
#include "ctl.h"

struct export_req
{
  struct ctl_req *req;
  struct vol_entry *e; /* set once the target is open: voldb_opened */
  struct backend *target;
  char *uri;
  bool created, json;
  uint32_t rate;
  /* the open on a worker thread */
  char *name;
  uint64_t size, attach_id;
  struct backend_opts bo;
  int r;
  char err[COW_ERRLEN];
  struct export_req *next; /* exports_opening */
};

/* The exports whose target opens on a thread. */
static struct export_req *exports_opening;

static struct export_req *
export_opening (const char *name)
{
  struct export_req *x = exports_opening;
  while (x && strcmp (x->name, name) != 0)
    x = x->next;
  return x;
}

static void
export_req_free (struct export_req *x, bool drop_target)
{
  if (drop_target)
    {
      backend_close (x->target);
      if (x->created)
        unlink (x->uri);
    }
  free (x->uri);
  free (x->name);
  free (x);
}

void
export_status_json (struct strbuf *sb, const struct volume *v)
{
  struct vol_export_info xi;
  vol_export_info (v, &xi);
  if (!xi.id)
    return sb_puts (sb, ",\"export\":null");
  sb_printf (sb,
             ",\"export\":{\"id\":%" PRIu64 ",\"state\":\"%s\","
             "\"target\":",
             xi.id, xi.state);
  sb_json_str (sb, xi.target);
  sb_printf (sb,
             ",\"percent\":%.1f,\"done\":%" PRIu64 ",\"total\":%" PRIu64
             ",\"ahead\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"bytes\":%" PRIu64
             ",\"rate_mbs\":%.1f,\"limit_mbs\":%" PRIu32
             ",\"elapsed_s\":%.3f,\"eta_s\":%.0f,\"code\":",
             100.0 * (double) xi.done / (double) xi.total, xi.done, xi.total,
             xi.ahead, xi.skipped, xi.bytes, xi.rate_mbs, xi.limit_mbs,
             xi.elapsed_s, xi.eta_s);
  if (xi.code)
    sb_printf (sb, "\"%s\"", cow_err_name (xi.code));
  else
    sb_puts (sb, "null");
  sb_puts (sb, ",\"error\":");
  sb_json_str (sb, xi.error);
  sb_puts (sb, "}");
}

void
export_status_text (struct strbuf *sb, const struct volume *v)
{
  struct vol_export_info xi;
  vol_export_info (v, &xi);
  if (!xi.id)
    return;
  sb_printf (sb,
             "export:      %s to %s, %.1f%% (%" PRIu64 " of %" PRIu64
             " chunks, %" PRIu64 " copied ahead of writes)",
             xi.state, xi.target, 100.0 * (double) xi.done / (double) xi.total,
             xi.done, xi.total, xi.ahead);
  if (strcmp (xi.state, "failed") && strcmp (xi.state, "cancelled"))
    sb_printf (sb, ", %.1f MB/s", xi.rate_mbs);
  if (xi.limit_mbs)
    sb_printf (sb, " (limit %" PRIu32 " MB/s)", xi.limit_mbs);
  if (xi.eta_s >= 0)
    sb_printf (sb, ", ETA %.0f s", xi.eta_s);
  if (xi.error[0])
    sb_printf (sb, "\n             %s", xi.error);
  sb_puts (sb, "\n");
}

static void
export_reply_started (struct export_req *x)
{
  struct strbuf sb = STRBUF_INIT;
  if (x->json)
    {
      sb_puts (&sb, "{\"name\":");
      sb_json_str (&sb, x->e->name);
      export_status_json (&sb, x->e->vol);
      sb_puts (&sb, "}\n");
    }
  else
    sb_printf (&sb,
               "%s: export to %s started; writes from now on are not "
               "in it\n",
               x->e->name, x->uri);
  ctl_reply (x->req, 0, sb_str (&sb));
  sb_free (&sb);
}

/* The volume is drained: the point in time. */
static void
export_drained (void *opaque, int res)
{
  struct export_req *x = opaque;
  struct volume *v = x->e->vol;
  char err[COW_ERRLEN];
  int r = res;
  if (r < 0)
    chain_drain_err (err, sizeof err, x->e->name, r);
  else
    r = vol_export_begin (v, x->target, x->created, x->rate, err, sizeof err);
  vol_resume_op (v);
  if (r < 0)
    {
      reply_fmt (x->req, r == -ECANCELED ? COW_E_BUSY : r, "%s", err);
      return export_req_free (x, true);
    }
  export_reply_started (x);
  export_req_free (x, false); /* the engine has the target now */
}

/* The target is no device of another volume (the engine checks the
 * volume's own): 0, or an answer and -1. */
static int
export_check_others (struct ctl_req *req, struct vol_entry *self,
                     const char *uri)
{
  char key[sizeof ((struct backend *) 0)->key], k2[sizeof key];
  const char *user = voldb_cow_user_uri (self->name, uri);
  const char *what = "the CoW device";
  backend_key (uri, key, sizeof key);
  for (struct vol_entry *e = cowd.vols; e && !user; e = e->next)
    {
      struct vol_layer_info li[DSCOW_CHAIN_MAX];
      unsigned n
          = e->vol && e != self ? vol_layers (e->vol, li, DSCOW_CHAIN_MAX) : 0;
      backend_key (e->base, k2, sizeof k2);
      if (e != self && strcmp (key, k2) == 0)
        user = e->name, what = "the base";
      for (unsigned i = 0; i < n && !user; i++)
        {
          backend_key (li[i].uri, k2, sizeof k2);
          if (strcmp (key, k2) == 0)
            user = e->name, what = "a CoW layer";
        }
    }
  if (!user)
    return 0;
  reply_fmt (req, COW_E_BAD_DEVICE,
             "volume %s: the export target %s is %s "
             "of volume %s",
             self->name, uri, what, user);
  return -1;
}

/* On a worker thread: x->name, size, uri and bo only. */
static void
export_open_work (void *data)
{
  struct export_req *x = data;
  x->r = vol_export_open_target (x->name, x->size, x->uri, &x->bo, &x->target,
                                 &x->created, x->err, sizeof x->err);
}

static void
export_opened (void *data)
{
  struct export_req *x = data, **pp = &exports_opening;
  while (*pp != x)
    pp = &(*pp)->next;
  *pp = x->next;
  struct vol_entry *e;
  char what[COW_ERRLEN - 128];
  bool opened = x->r == 0;
  snprintf (what, sizeof what, "the export target %s", x->uri);
  int r = voldb_opened (x->name, x->attach_id, what,
                        "the export target cannot be used: ", x->target, x->r,
                        &e, x->err, sizeof x->err);
  x->e = e;
  if (r == 0)
    r = vol_export_check (e->vol, x->uri, x->err, sizeof x->err);
  if (r < 0)
    {
      reply_fmt (x->req, r, "%s", x->err);
      return export_req_free (x, opened); /* a failed open left nothing */
    }
  if (chain_hold_op (x->req, e, export_drained, x) < 0)
    export_req_free (x, true);
}

static void
export_start (struct ctl_req *req, struct vol_entry *e, const char *uri,
              uint32_t rate, bool json)
{
  char err[COW_ERRLEN];
  if (export_opening (e->name))
    return reply_fmt (req, COW_E_BUSY,
                      "volume %s: the target of another export of it is "
                      "being opened; try again",
                      e->name);
  int r = vol_export_check (e->vol, uri, err, sizeof err);
  if (r < 0)
    return reply_fmt (req, r, "%s", err);
  struct export_req *x = calloc (1, sizeof *x);
  char *u = strdup (uri), *n = strdup (e->name);
  if (!x || !u || !n)
    {
      free (x);
      free (u);
      free (n);
      return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                        e->name);
    }
  *x = (struct export_req){ .req = req,
                            .uri = u,
                            .rate = rate,
                            .json = json,
                            .name = n,
                            .size = vol_super (e->vol)->volume_size,
                            .attach_id = e->attach_id,
                            .next = exports_opening };
  voldb_backend_opts (&x->bo);
  x->bo.blocking_only = x->bo.loop_later = true;
  exports_opening = x;
  cowd_offload (export_open_work, export_opened, x);
}

void
cmd_export (struct ctl_req *req, int argc, char **argv, bool json)
{
  static const struct option opts[] = {
    { "to", required_argument, NULL, 't' },
    { "rate", required_argument, NULL, 'r' },
    { "cancel", no_argument, NULL, 'c' },
    { NULL, 0, NULL, 0 },
  };
  const char *to = NULL;
  bool cancel = false, rate_given = false;
  uint32_t rate = 0;
  char err[COW_ERRLEN];
  int c;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    switch (c)
      {
      case 't':
        to = optarg;
        break;
      case 'c':
        cancel = true;
        break;
      case 'r':
        rate_given = true;
        if (parse_rate (optarg, &rate) < 0)
          return reply_fmt (req, COW_E_USAGE,
                            "rate '%s' is not a whole "
                            "number of MB/s",
                            optarg);
        break;
      default:
        return reply_fmt (req, COW_E_USAGE, "export: unknown option '%s'",
                          argv[optind - 1]);
      }
  if (optind != argc - 1 || cancel == (to != NULL) || (cancel && rate_given))
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[optind]);
  if (!e)
    return;
  if (!e->vol || e->closing)
    return reply_fmt (req, COW_E_NOT_ATTACHED, "volume %s is not attached",
                      e->name);
  if (cancel)
    {
      int r = vol_export_cancel (e->vol, err, sizeof err);
      return r < 0 ? reply_fmt (req, r, "%s", err)
                   : reply_fmt (req, 0,
                                json ? "{\"name\":\"%s\",\"cancelled\":true}\n"
                                     : "%s: export cancelled\n",
                                e->name);
    }
  if (voldb_check_path (e->name, "export target", to, err, sizeof err) < 0)
    return reply_fmt (req, COW_E_BAD_DEVICE, "%s", err);
  if (export_check_others (req, e, to) == 0)
    export_start (req, e, to, rate, json);
}
