/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-cluster.c: the commands of cluster mode, served after ctl-cmds.c's
 * table (built only with corosync; own-none.c stands in without it):
 * nodes (membership, quorum, the loop's probe), migrate, fence (status,
 * a node by hand, confirm, probe) and handoff-times.  Each answers
 * "not-clustered" on a standalone cowd. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "cluster.h"
#include "cowd.h"
#include "ctl.h"
#include "loop.h"
#include "strbuf.h"

static bool
need_cluster (struct ctl_req *req)
{
  if (cowd.clustered)
    return true;
  reply_fmt (req, COW_E_NOT_CLUSTERED,
             "this cowd runs standalone; cluster "
             "commands need cowd --cluster NAME and corosync");
  return false;
}

static void
cmd_nodes (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 1)
    return reply_usage (req, argv[0]);
  if (!need_cluster (req))
    return;
  uint32_t m[CLUSTER_MAX_MEMBERS];
  size_t n = cluster_members (m, CLUSTER_MAX_MEMBERS);
  struct strbuf sb = STRBUF_INIT;
  double gap, busy, sgap, sbusy, safter, own, sown;
  uint64_t slow;
  probe_get (&gap, &busy, &slow);
  probe_synced (&sgap, &sbusy, &safter);
  probe_own (&own, &sown);
  double commit_ms;
  unsigned commit_rows;
  voldb_batch_stats (&commit_ms, &commit_rows);
  if (json)
    {
      sb_printf (&sb,
                 "{\"local\":%u,\"quorate\":%s,\"ring_id\":%" PRIu64
                 ",\"synced\":%s,\"synced_after_ms\":%.3f,\"volumes\":%zu,"
                 "\"loop\":{\"max_gap_ms\":%.3f,"
                 "\"max_busy_ms\":%.3f,\"gaps_over_10ms\":%" PRIu64
                 ",\"sync_gap_ms\":%.3f,\"sync_busy_ms\":%.3f,"
                 "\"sync_step_ms\":%.3f,\"io_yields\":%" PRIu64
                 ",\"max_own_gap_ms\":%.3f,\"sync_own_gap_ms\":%.3f,"
                 "\"batch_commit_ms\":%.3f,\"batch_rows\":%u,"
                 "\"realtime_priority\":%d,\"max_gap_in\":",
                 cluster_nodeid (), cluster_quorate () ? "true" : "false",
                 cluster_ring_id (), cluster_synced () ? "true" : "false",
                 safter, cluster_table_size (), gap, busy, slow, sgap, sbusy,
                 cluster_sync_max_step_ms (), cowd_io_yields (), own, sown,
                 commit_ms, commit_rows, probe_realtime_priority ());
      const char *in = probe_max_gap_in ();
      sb_json_str_or_null (&sb, in[0] ? in : NULL);
      sb_puts (&sb, "},\"members\":[");
      for (size_t i = 0; i < n; i++)
        sb_printf (&sb, "%s%u", i ? "," : "", m[i]);
      sb_puts (&sb, "]}\n");
    }
  else
    {
      sb_printf (&sb,
                 "local node: %u\nquorate:    %s\nring id:    %" PRIu64
                 "\nmembers:   ",
                 cluster_nodeid (), cluster_quorate () ? "yes" : "NO",
                 cluster_ring_id ());
      for (size_t i = 0; i < n; i++)
        sb_printf (&sb, " %u", m[i]);
      sb_puts (&sb, "\n");
    }
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

static bool
cmd_is_member (uint32_t node)
{
  uint32_t m[CLUSTER_MAX_MEMBERS];
  size_t n = cluster_members (m, CLUSTER_MAX_MEMBERS);
  for (size_t i = 0; i < n; i++)
    if (m[i] == node)
      return true;
  return false;
}

static void
cmd_migrate (struct ctl_req *req, int argc, char **argv, bool json)
{
  uint32_t to;
  if (argc != 4 || strcmp (argv[2], "--to") || parse_node (argv[3], &to) < 0)
    return reply_usage (req, argv[0]);
  struct vol_entry *e;
  if (!need_cluster (req) || !(e = find_or_reply (req, argv[1])))
    return;
  if (to == cluster_nodeid () && e->vol)
    own_note_request (e);
  if (!cmd_is_member (to))
    return reply_fmt (req, COW_E_NO_SUCH_NODE,
                      "volume %s: cannot migrate: "
                      "node %u is not a member of cluster %s",
                      argv[1], to, cowd.cluster_name);
  int r = cluster_migrate (argv[1], to);
  if (r < 0)
    return reply_fmt (
        req, r == -ENOTCONN ? COW_E_NO_QUORUM : r,
        "volume %s:"
        " cannot migrate: %s",
        argv[1], r == -ENOTCONN ? "this node is not quorate" : strerror (-r));
  ctl_reply (req, 0, json ? "{}\n" : "");
}

static void
cmd_fence (struct ctl_req *req, int argc, char **argv, bool json)
{
  uint32_t node;
  if (!need_cluster (req))
    return;
  if (argc == 3 && strcmp (argv[1], "confirm") == 0
      && parse_node (argv[2], &node) == 0)
    {
      if (cluster_fence_confirm (node) < 0)
        return reply_fmt (req, COW_E_NO_QUORUM,
                          "cannot confirm node %u: "
                          "this node is not quorate",
                          node);
      qb_log (LOG_WARNING, "cluster: operator confirmed node %u is down", node);
      return ctl_reply (req, 0, json ? "{}\n" : "");
    }
  if (argc == 2 && strcmp (argv[1], "status") == 0)
    {
      struct strbuf sb = STRBUF_INIT;
      fencing_status (&sb, json);
      for (struct vol_entry *e = cowd.vols; e && !json; e = e->next)
        {
          const struct cluster_vol *cv = cluster_lookup (e->name);
          if (cv && cv->state == CL_FENCING)
            sb_printf (&sb, "%s: waiting for node %u to be fenced\n", e->name,
                       cv->fenced_node);
        }
      ctl_reply (req, 0, sb_str (&sb));
      sb_free (&sb);
      return;
    }
  if (argc == 2 && parse_node (argv[1], &node) == 0)
    return fencing_manual (node, req);
  if (argc == 3 && strcmp (argv[1], "probe") == 0)
    {
      struct vol_entry *e = find_or_reply (req, argv[2]);
      char out[300];
      if (!e)
        return;
      if (!e->vol)
        return reply_fmt (req, COW_E_NOT_ATTACHED,
                          "volume %s is not "
                          "attached",
                          e->name);
      if (fencing_probe (e, out, sizeof out) < 0)
        return reply_fmt (req, COW_E_IO, "%s", out);
      return reply_fmt (req, 0,
                        json ? "{\"volume\":\"%s\",\"result\":"
                               "\"%s\"}\n"
                             : "%s: %s\n",
                        e->name, out);
    }
  reply_usage (req, argv[0]);
}

static void
handoff_json (struct strbuf *sb, const char *key, const double *ms, unsigned n)
{
  sb_printf (sb, "\"%s\":[", key);
  for (unsigned i = 0; i < n; i++)
    sb_printf (sb, "%s%.3f", i ? "," : "", ms[i]);
  sb_puts (sb, "]");
}

static void
cmd_handoff_stats (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 1)
    return reply_usage (req, argv[0]);
  struct strbuf sb = STRBUF_INIT;
  struct own_times t = own_handoff_times ();
  if (json)
    {
      sb_puts (&sb, "{");
      handoff_json (&sb, "served", t.served, t.nserved);
      sb_puts (&sb, ",");
      handoff_json (&sb, "held", t.held, t.nheld);
      sb_puts (&sb, "}\n");
    }
  for (unsigned i = 0; i < t.nserved && !json; i++)
    sb_printf (&sb, "served %.3f\n", t.served[i]);
  for (unsigned i = 0; i < t.nheld && !json; i++)
    sb_printf (&sb, "held %.3f\n", t.held[i]);
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

static const struct cmd cmds[] = {
  { "nodes", cmd_nodes },
  { "migrate", cmd_migrate },
  { "fence", cmd_fence },
  { "handoff-times", cmd_handoff_stats },
};

const struct cmd *const cluster_cmds = cmds;
const size_t cluster_ncmds = sizeof cmds / sizeof cmds[0];
