/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-cmds.c: the commands cowctl sends, as cowd carries them out.
 *
 * Each command parses its own arguments (argv[0] is the command) and
 * answers with ctl_reply: a readable table or sentence by default, JSON
 * with CTL_F_JSON.  Commands that wait for IO (detach) reply later, from
 * the completion.  Errors are one sentence naming the volume and cause.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qblog.h>

#include "cowd.h"
#include "ctl.h"
#ifdef HAVE_COROSYNC
#include "cluster.h"
#endif
#include "nbd-server.h"

struct cmd
{
  const char *name;             /* as in ctl_commands (ctl-usage.c) */
  void (*fn) (struct ctl_req *req, int argc, char **argv, bool json);
};

static void
reply_fmt (struct ctl_req *req, int code, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* Answer with a sentence: success when code is 0, else an error with its
 * code (COW_E_*, or a negative errno or code: errcode.h). */
static void
reply_fmt (struct ctl_req *req, int code, const char *fmt, ...)
{
  struct strbuf sb = STRBUF_INIT;
  va_list ap;
  va_start (ap, fmt);
  sb_vprintf (&sb, fmt, ap);
  va_end (ap);
  if (code == 0)
    ctl_reply (req, 0, sb_str (&sb));
  else
    ctl_reply_error (req, code, sb_str (&sb));
  sb_free (&sb);
}

/* A malformed command: its usage line from the shared list (ctl-usage.c),
 * on one line. */
static void
reply_usage (struct ctl_req *req, const char *cmd)
{
  const struct ctl_command *c = ctl_command_find (cmd);
  struct strbuf sb = STRBUF_INIT;
  sb_puts (&sb, "usage: cowctl ");
  for (const char *p = c ? c->usage : cmd; *p; p++)
    if (*p == '\n')
      while (p[1] == ' ')
        p++;
    else
      sb_printf (&sb, "%c", *p);
  ctl_reply_error (req, COW_E_USAGE, sb_str (&sb));
  sb_free (&sb);
}

/* Parse sizes such as 65536, 64K, 1M (powers of 1024). */
static int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno || end == s)
    return -1;
  int shift = 0;
  switch (*end)
    {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case '\0': break;
    default: return -1;
    }
  if (*end == 'i' && end[1] == 'B')
    end += 2;
  else if (*end == 'B')
    end++;
  if (*end || v > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t) v << shift;
  return 0;
}

static struct vol_entry *
find_or_reply (struct ctl_req *req, const char *name)
{
  struct vol_entry *e = voldb_find (name);
  if (!e)
    reply_fmt (req, COW_E_NO_SUCH_VOLUME, "volume %s does not exist", name);
  return e;
}

/* The volume's own state; the backends' health shows only where the
 * volume would otherwise look fine (an active volume whose session is
 * reconnecting or degraded).  A backend that was fenced does not make a
 * volume "fenced": only this host being fenced does. */
static const char *
entry_state (const struct vol_entry *e)
{
  if (e->closing)
    return "detaching";
  if (!e->vol)
    return e->error ? "failed" : "detached";
  enum vol_state st = vol_get_state (e->vol);
  const char *h = vol_health (e->vol);
  if (st == VOL_STATE_ACTIVE && (strcmp (h, "reconnecting") == 0
                                 || strcmp (h, "degraded") == 0))
    return h;
  return vol_state_name (st);
}

/* --- create --- */

/* The argument getopt stopped at: it names the short option of "-bad" by
 * its letter and may have moved past it, so find the word itself. */
static const char *
cmd_bad_option (int argc, char **argv)
{
  for (int i = 1; i < argc && i <= optind; i++)
    if (argv[i][0] == '-' && (i == optind || i == optind - 1))
      return argv[i];
  return optind > 0 && optind <= argc ? argv[optind - 1] : "?";
}

static void
cmd_create (struct ctl_req *req, int argc, char **argv, bool json)
{
  static const struct option opts[] = {
    { "base", required_argument, NULL, 'b' },
    { "cow", required_argument, NULL, 'c' },
    { "chunk-size", required_argument, NULL, 's' },
    { "commit", required_argument, NULL, 'p' },
    { "force", no_argument, NULL, 'f' },
    { "exclusive", no_argument, NULL, 'x' },
    { "buffered", no_argument, NULL, 'B' },
    { NULL, 0, NULL, 0 },
  };
  struct vol_params p = { .commit = DSCOW_COMMIT_SYNC };
  bool exclusive = false;
  uint64_t cs = DSCOW_CHUNK_DEFAULT;
  int c;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":", opts, NULL)) != -1)
    switch (c)
      {
      case 'b': p.base_uri = optarg; break;
      case 'c': p.cow_uri = optarg; break;
      case 's':
        if (parse_size (optarg, &cs) < 0 || cs > UINT32_MAX
            || !dscow_chunk_size_valid ((uint32_t) cs))
          return reply_fmt (req, COW_E_USAGE, "chunk size '%s' is not a "
                            "power of two between 4K and 1M", optarg);
        break;
      case 'p':
        if (vol_commit_parse (optarg, &p.commit) < 0)
          return reply_fmt (req, COW_E_USAGE, "commit policy '%s' is not "
                            "one of sync, flush, none", optarg);
        break;
      case 'f': p.force = true; break;
      case 'x': exclusive = true; break;
      case 'B': p.buffered = true; break;
      case ':':
        return reply_fmt (req, COW_E_USAGE, "create: option '%s' needs a "
                          "value", argv[optind - 1]);
      default:
        return reply_fmt (req, COW_E_USAGE, "create: unknown option '%s'",
                          cmd_bad_option (argc, argv));
      }
  if (optind != argc - 1 || !p.base_uri || !p.cow_uri)
    return reply_usage (req, argv[0]);
  p.name = argv[optind];
  p.chunk_size = (uint32_t) cs;
  if (!dscow_name_valid (p.name))
    return reply_fmt (req, COW_E_USAGE, "volume name '%s' is not valid: %s",
                      p.name, dscow_strerror (DSCOW_ENAME));
  if (voldb_find (p.name))
    return reply_fmt (req, COW_E_EXISTS, "volume %s already exists", p.name);
  char err[COW_ERRLEN];
  if (voldb_check_path (p.name, "base", p.base_uri, err, sizeof err) < 0
      || voldb_check_path (p.name, "CoW", p.cow_uri, err, sizeof err) < 0)
    return reply_fmt (req, COW_E_BAD_DEVICE, "%s", err);
  /* Before the format: --force never formats another volume's device. */
  const char *user = voldb_cow_user_uri (p.name, p.cow_uri);
  if (user)
    return reply_fmt (req, vol_err_cow_taken (err, sizeof err, p.name,
                                              p.cow_uri, user), "%s", err);
  p.cow_user = voldb_cow_user;
  p.cow_user_ud = (void *) p.name;
  struct backend_opts bo;
  voldb_backend_opts (&bo);
  int r = vol_format (&p, &bo, err, sizeof err);
  if (r < 0)
    return reply_fmt (req, r, "%s", err);
  struct vol_entry *e = voldb_add (p.name, p.base_uri, p.cow_uri,
                                   p.chunk_size, p.commit);
  if (!e)
    return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                      p.name);
  e->exclusive = exclusive;
  e->buffered = p.buffered;
  if (voldb_store (e) < 0)
    return reply_fmt (req, COW_E_IO, "volume %s: formatted, but saving "
                      "the definition in %s failed", p.name, cowd.state_dir);
#ifdef HAVE_COROSYNC
  if (cowd.clustered)
    own_define (e);
#endif
  if (json)
    {
      struct strbuf sb = STRBUF_INIT;
      sb_puts (&sb, "{\"name\":");
      sb_json_str (&sb, p.name);
      sb_printf (&sb, ",\"chunk_size\":%u,\"commit\":\"%s\"}\n", p.chunk_size,
                 vol_commit_name (p.commit));
      ctl_reply (req, 0, sb_str (&sb));
      sb_free (&sb);
      return;
    }
  reply_fmt (req, 0, "created volume %s (chunk size %u, commit %s)\n",
             p.name, p.chunk_size, vol_commit_name (p.commit));
}

/* --- attach / detach / delete --- */

static char *
entry_uri (const struct vol_entry *e)
{
  char *sock = voldb_socket_path (e), *uri = NULL;
  if (sock && asprintf (&uri, "nbd+unix:///?socket=%s", sock) < 0)
    uri = NULL;
  free (sock);
  return uri;
}

static void
cmd_attach (struct ctl_req *req, int argc, char **argv, bool json)
{
  bool incoming = false, accept = false;
  for (int i = 2; i < argc; i++)
    if (strcmp (argv[i], "--incoming") == 0)
      incoming = true;
    else if (strcmp (argv[i], "--accept-base-change") == 0)
      accept = true;
    else
      argc = 0;
  if (argc < 2)
    return reply_usage (req, "attach");
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (e->closing)
    return reply_fmt (req, COW_E_BUSY, "volume %s is being detached; try"
                      " again", e->name);
  char err[COW_ERRLEN];
  int r;
  e->accept_base_change = accept;
#ifdef HAVE_COROSYNC
  if (cowd.clustered)
    r = e->vol ? 0 : own_attach (e, incoming, err, sizeof err);
  else
#endif
    r = voldb_attach (e, err, sizeof err);
  (void) incoming;
  e->accept_base_change = false;
  if (r < 0)
    {
      voldb_set_error (e, err);
      return reply_fmt (req, r, "%s", err);
    }
  if (!e->attached)
    {
      e->attached = true;
      voldb_store_lazy (e);     /* no fsync on the way to serving */
    }
  char *uri = entry_uri (e);
  if (json)
    reply_fmt (req, 0, "{\"name\":\"%s\",\"uri\":\"%s\"}\n", e->name,
               uri ? uri : "");
  else
    reply_fmt (req, 0, "%s\n", uri ? uri : "");
  free (uri);
}

static void
cmd_detach_done (void *opaque, int res)
{
  struct ctl_req *req = opaque;
  if (res < 0)
    reply_fmt (req, res, "volume detached, but marking it clean "
               "failed: %s", strerror (-res));
  else
    ctl_reply (req, 0, ctl_req_flags (req) & CTL_F_JSON ? "{}\n" : "");
}

static void
cmd_detach (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (e->attached)
    {
      e->attached = false;
      voldb_store (e);
    }
  voldb_set_error (e, NULL);
  if (!e->vol || e->closing)
    return ctl_reply (req, 0, json ? "{}\n" : "");
#ifdef HAVE_COROSYNC
  if (cowd.clustered)
    return own_detach (e, cmd_detach_done, req);
#endif
  voldb_detach (e, cmd_detach_done, req);
}

static void
cmd_delete (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (e->vol || e->closing)
    return reply_fmt (req, COW_E_ATTACHED, "volume %s is attached; detach it"
                      " first", e->name);
  if (voldb_unstore (e) < 0)
    return reply_fmt (req, COW_E_IO, "volume %s: removing the definition "
                      "from %s failed", e->name, cowd.state_dir);
  voldb_remove (e);
  ctl_reply (req, 0, json ? "{}\n" : "");
}

/* --- list / status / stats --- */

/* --- hydration progress --- */

static const char *
hydration_state (const struct vol_hydrate *h)
{
  if (h->hydrated)
    return "hydrated";
  if (h->running)
    return "running";
  return h->wanted ? "waiting" : "off";
}

static void
hydration_json (struct strbuf *sb, const struct volume *v)
{
  struct vol_hydrate h;
  vol_hydrate_info (v, &h);
  sb_printf (sb, ",\"hydration\":{\"state\":\"%s\",\"percent\":%.1f,"
             "\"done\":%" PRIu64 ",\"total\":%" PRIu64 ",\"copied\":%"
             PRIu64 ",\"rate_mbs\":%.1f,\"limit_mbs\":%" PRIu32
             ",\"eta_s\":%.0f,\"elapsed_s\":%.3f,\"error\":",
             hydration_state (&h), 100.0 * (double) h.done / (double) h.total,
             h.done, h.total, h.copied, h.rate_mbs, h.limit_mbs, h.eta_s,
             h.elapsed_s);
  sb_json_str (sb, h.error ? strerror (-h.error) : "");
  sb_puts (sb, "}");
}

static void
hydration_text (struct strbuf *sb, const struct volume *v)
{
  struct vol_hydrate h;
  vol_hydrate_info (v, &h);
  if (!h.wanted && !h.hydrated)
    return;
  sb_printf (sb, "hydration:   %s, %.1f%% (%" PRIu64 " of %" PRIu64
             " chunks, %" PRIu64 " copied here)", hydration_state (&h),
             100.0 * (double) h.done / (double) h.total, h.done, h.total,
             h.copied);
  if (h.running)
    sb_printf (sb, ", %.1f MB/s", h.rate_mbs);
  if (h.limit_mbs)
    sb_printf (sb, " (limit %" PRIu32 " MB/s)", h.limit_mbs);
  if (h.running && h.eta_s >= 0)
    sb_printf (sb, ", ETA %.0f s", h.eta_s);
  if (h.error)
    sb_printf (sb, ", last copy failed: %s", strerror (-h.error));
  if (!vol_has_base (v))
    sb_puts (sb, ", no base");
  sb_puts (sb, "\n");
}

static void
entry_json (struct strbuf *sb, const struct vol_entry *e, bool full)
{
  sb_puts (sb, "{\"name\":");
  sb_json_str (sb, e->name);
  sb_printf (sb, ",\"state\":\"%s\",\"commit\":\"%s\",\"exclusive\":%s",
             entry_state (e), vol_commit_name (e->commit),
             e->exclusive ? "true" : "false");
#ifdef HAVE_COROSYNC
  const struct cluster_vol *cv = cowd.clustered ? cluster_lookup (e->name)
    : NULL;
  if (cv)
    sb_printf (sb, ",\"cluster_state\":\"%s\",\"owner\":%u,"
               "\"cluster_epoch\":%" PRIu64 ",\"requester\":%u,"
               "\"bouncing\":%s", cluster_state_name (cv->state), cv->owner,
               cv->epoch, cv->requester, cv->bouncing ? "true" : "false");
#endif
  sb_puts (sb, ",\"base\":");
  sb_json_str (sb, e->base);
  sb_puts (sb, ",\"cow\":");
  sb_json_str (sb, e->cow);
  if (e->error)
    {
      sb_puts (sb, ",\"error\":");
      sb_json_str (sb, e->error);
    }
  if (e->vol)
    {
      const struct dscow_super *s = vol_super (e->vol);
      char *uri = entry_uri (e);
      char uuid[37];
      dscow_uuid_format (s->uuid, uuid);
      sb_printf (sb, ",\"size\":%" PRIu64 ",\"chunk_size\":%u,\"chunks\":%"
                 PRIu64 ",\"cow_chunks\":%" PRIu64 ",\"epoch\":%" PRIu64
                 ",\"generation\":%" PRIu64 ",\"uuid\":\"%s\",\"uri\":",
                 s->volume_size, s->chunk_size,
                 dscow_nr_chunks (s->volume_size, s->chunk_size),
                 vol_cow_chunks (e->vol), s->epoch, vol_generation (e->vol),
                 uuid);
      sb_json_str (sb, uri ? uri : "");
      sb_printf (sb, ",\"connections\":%u,\"health\":\"%s\"",
                 nbd_export_connections (e->exp), vol_health (e->vol));
      free (uri);
    }
  if (e->vol)
    hydration_json (sb, e->vol);
  if (full && e->vol)
    {
      struct vol_stats st;
      vol_get_stats (e->vol, &st);
      sb_printf (sb, ",\"stats\":{\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
                 ",\"flushes\":%" PRIu64 ",\"trims\":%" PRIu64
                 ",\"write_zeroes\":%" PRIu64 ",\"bytes_read\":%" PRIu64
                 ",\"bytes_written\":%" PRIu64 ",\"read_base_bytes\":%" PRIu64
                 ",\"read_cow_bytes\":%" PRIu64 ",\"cow_faults\":%" PRIu64
                 ",\"full_chunk_writes\":%" PRIu64 ",\"commits\":%" PRIu64
                 ",\"committed_requests\":%" PRIu64 ",\"errors\":%" PRIu64
                 ",\"in_flight\":%" PRIu64 ",\"blocking_io_ms\":%.3f"
                 ",\"hydrated_chunks\":%" PRIu64
                 ",\"takeovers\":%" PRIu64 ",\"handoffs\":%" PRIu64
                 ",\"commit_p50_s\":%.6f,\"commit_p99_s\":%.6f"
                 ",\"commit_seconds_sum\":%.6f}",
                 st.reads, st.writes, st.flushes, st.trims, st.zeroes,
                 st.bytes_read, st.bytes_written, st.read_base_bytes,
                 st.read_cow_bytes, st.cow_faults, st.full_chunk_writes,
                 st.commits, st.commit_faults, st.errors, st.in_flight,
                 (double) st.blocking_io_ns / 1e6,
                 st.hydrated_chunks, st.takeovers, st.handoffs,
                 vol_stats_quantile (&st, 0.5), vol_stats_quantile (&st, 0.99),
                 (double) st.commit_ns_sum / 1e9);
    }
  sb_puts (sb, "}");
}

static void
human_size (uint64_t n, char *buf, size_t len)
{
  const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  int i = 0;
  double d = (double) n;
  while (d >= 1024 && i < 4)
    d /= 1024, i++;
  snprintf (buf, len, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

static void
cmd_list (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 1)
    return reply_usage (req, argv[0]);
  struct strbuf sb = STRBUF_INIT;
  if (json)
    {
      sb_puts (&sb, "[");
      for (struct vol_entry *e = cowd.vols; e; e = e->next)
        {
          entry_json (&sb, e, false);
          if (e->next)
            sb_puts (&sb, ",");
        }
      sb_puts (&sb, "]\n");
    }
  else
    {
      sb_printf (&sb, "%-20s %-10s %10s %7s %7s %-6s %s\n", "NAME", "STATE",
                 "SIZE", "CHUNK", "COW%", "COMMIT", "URI");
      for (struct vol_entry *e = cowd.vols; e; e = e->next)
        {
          char size[32] = "-", chunk[32] = "-", pct[16] = "-";
          char *uri = e->vol ? entry_uri (e) : NULL;
          if (e->vol)
            {
              const struct dscow_super *s = vol_super (e->vol);
              human_size (s->volume_size, size, sizeof size);
              human_size (s->chunk_size, chunk, sizeof chunk);
              snprintf (pct, sizeof pct, "%.1f", 100.0
                        * (double) vol_cow_chunks (e->vol)
                        / (double) dscow_nr_chunks (s->volume_size,
                                                    s->chunk_size));
            }
          sb_printf (&sb, "%-20s %-10s %10s %7s %7s %-6s %s\n", e->name,
                     entry_state (e), size, chunk, pct,
                     vol_commit_name (e->commit), uri ? uri : "-");
          free (uri);
        }
    }
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

static void
status_text (struct strbuf *sb, const struct vol_entry *e, bool stats_only)
{
  if (!stats_only)
    {
      sb_printf (sb, "name:        %s\nstate:       %s\nbase:        %s\n"
                 "cow:         %s\ncommit:      %s%s\n", e->name,
                 entry_state (e), e->base, e->cow,
                 vol_commit_name (e->commit),
                 e->buffered ? " (buffered)" : " (O_DIRECT)");
#ifdef HAVE_COROSYNC
      const struct cluster_vol *cv = cowd.clustered
        ? cluster_lookup (e->name) : NULL;
      if (cv)
        sb_printf (sb, "cluster:     %s, owner node %u, epoch %" PRIu64
                   "%s%s\n", cluster_state_name (cv->state), cv->owner,
                   cv->epoch, cv->def.exclusive ? ", exclusive" : "",
                   cv->bouncing ? ", BOUNCING" : "");
#endif
      if (e->error)
        sb_printf (sb, "error:       %s\n", e->error);
      if (!e->vol)
        return;
      const struct dscow_super *s = vol_super (e->vol);
      char size[32], chunk[32], uuid[37], *uri = entry_uri (e);
      uint64_t n = dscow_nr_chunks (s->volume_size, s->chunk_size);
      human_size (s->volume_size, size, sizeof size);
      human_size (s->chunk_size, chunk, sizeof chunk);
      dscow_uuid_format (s->uuid, uuid);
      sb_printf (sb, "uuid:        %s\nsize:        %s (%" PRIu64 " bytes)\n"
                 "chunk size:  %s\nchunks:      %" PRIu64 " of %" PRIu64
                 " in the CoW layer (%.1f%%)\nepoch:       %" PRIu64
                 "\ngeneration:  %" PRIu64 "\nuri:         %s\n"
                 "connections: %u\nhealth:      %s\n", uuid, size,
                 s->volume_size, chunk, vol_cow_chunks (e->vol), n,
                 100.0 * (double) vol_cow_chunks (e->vol) / (double) n,
                 s->epoch, vol_generation (e->vol), uri ? uri : "",
                 nbd_export_connections (e->exp), vol_health (e->vol));
      free (uri);
      hydration_text (sb, e->vol);
    }
  if (!e->vol)
    return;
  struct vol_stats st;
  vol_get_stats (e->vol, &st);
  sb_printf (sb, "reads:       %" PRIu64 " (%" PRIu64 " bytes: %" PRIu64
             " from base, %" PRIu64 " from CoW)\nwrites:      %" PRIu64
             " (%" PRIu64 " bytes)\ncow faults:  %" PRIu64 " (%" PRIu64
             " whole-chunk, no copy)\ncommits:     %" PRIu64 " covering %"
             PRIu64 " requests (%.1f per commit)\nflushes:     %" PRIu64
             "\ntrims:       %"
             PRIu64 "\nzeroes:      %" PRIu64 "\nerrors:      %" PRIu64
             "\nin flight:   %" PRIu64 "\nblocking IO: %.3f ms (the loop "
             "waited: open, standalone takeover, close)\nhydrated:    %"
             PRIu64 " chunks copied\ncommit time: p50 < %.3f ms, p99 < %.3f ms\n"
             "ownership:   taken %" PRIu64 " times, handed off %" PRIu64 "\n",
             st.reads, st.bytes_read,
             st.read_base_bytes, st.read_cow_bytes, st.writes,
             st.bytes_written, st.cow_faults, st.full_chunk_writes,
             st.commits, st.commit_faults, st.commits ? (double)
             st.commit_faults / (double) st.commits : 0.0, st.flushes,
             st.trims, st.zeroes, st.errors, st.in_flight,
             (double) st.blocking_io_ns / 1e6, st.hydrated_chunks,
             vol_stats_quantile (&st, 0.5) * 1e3,
             vol_stats_quantile (&st, 0.99) * 1e3, st.takeovers, st.handoffs);
}

static void
cmd_status_common (struct ctl_req *req, int argc, char **argv, bool json,
                   bool stats_only)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  struct strbuf sb = STRBUF_INIT;
  if (json)
    {
      entry_json (&sb, e, true);
      sb_puts (&sb, "\n");
    }
  else
    status_text (&sb, e, stats_only);
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

static void
cmd_status (struct ctl_req *req, int argc, char **argv, bool json)
{
  cmd_status_common (req, argc, argv, json, false);
}

static void
cmd_stats (struct ctl_req *req, int argc, char **argv, bool json)
{
  cmd_status_common (req, argc, argv, json, true);
}

/* --- hydrate / unbase --- */

static void
cmd_hydrate (struct ctl_req *req, int argc, char **argv, bool json)
{
  static const struct option opts[] = {
    { "rate", required_argument, NULL, 'r' },
    { "cancel", no_argument, NULL, 'c' },
    { NULL, 0, NULL, 0 },
  };
  bool cancel = false;
  unsigned long rate = 0;
  char *end;
  int c;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    switch (c)
      {
      case 'r':
        errno = 0;
        rate = strtoul (optarg, &end, 10);
        if (errno || *end || end == optarg || rate > UINT32_MAX)
          return reply_fmt (req, COW_E_USAGE, "rate '%s' is not a whole "
                            "number of MB/s", optarg);
        break;
      case 'c': cancel = true; break;
      default:
        return reply_fmt (req, COW_E_USAGE, "hydrate: unknown option "
                          "'%s'", argv[optind - 1]);
      }
  if (optind != argc - 1 || (cancel && rate))
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[optind]);
  if (!e)
    return;
  if (!e->vol)
    return reply_fmt (req, COW_E_NOT_ATTACHED, "volume %s is not attached",
                      e->name);
  char err[512];
  int r = cancel ? vol_hydrate_cancel (e->vol, err, sizeof err)
    : vol_hydrate_start (e->vol, (uint32_t) rate, err, sizeof err);
  if (r < 0)
    return reply_fmt (req, COW_E_IO, "%s", err);
  if (json)
    return cmd_status_common (req, 2, (char *[]) { "status", e->name },
                              true, false);
  reply_fmt (req, 0, "%s: hydration %s\n", e->name,
             cancel ? "cancelled" : "started");
}

/* A detached volume opens without its base only when it is hydrated;
 * it is closed again untouched (never taken: no superblock write). */
static int
unbase_check_detached (struct vol_entry *e, char *err, size_t errlen)
{
  struct backend_opts bo;
  struct volume *v;
  struct vol_params p = { .name = e->name, .cow_uri = e->cow,
    .commit = e->commit, .buffered = e->buffered };
  voldb_backend_opts (&bo);
  if (vol_open (&p, &bo, &v, err, errlen) < 0)
    return -1;
  vol_set_state (v, VOL_STATE_READONLY);
  vol_close (v, NULL, NULL);
  return 0;
}

static void
cmd_unbase (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (cowd.clustered)
    return reply_fmt (req, COW_E_USAGE, "volume %s: unbase is only "
                      "supported on a standalone cowd", e->name);
  char err[512];
  if ((e->vol ? vol_drop_base (e->vol, err, sizeof err)
       : unbase_check_detached (e, err, sizeof err)) < 0)
    return reply_fmt (req, COW_E_IO, "%s", err);
  char *old = e->base;
  if (!(e->base = strdup (VOLDB_NO_BASE)))
    {
      e->base = old;
      return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                        e->name);
    }
  if (voldb_store (e) < 0)
    return reply_fmt (req, COW_E_IO, "volume %s: the base is closed, "
                      "but saving the definition in %s failed", e->name,
                      cowd.state_dir);
  qb_log (LOG_INFO, "cowd: %s: base %s dropped from the definition",
          e->name, old);
  reply_fmt (req, 0, json ? "{\"name\":\"%s\",\"base\":null}\n"
             : "%s: the base is no longer used\n", e->name);
  free (old);
}

#ifdef HAVE_COROSYNC
static int
parse_node (const char *s, uint32_t *node)
{
  const char *p = s;
  while (*p && (*p < '0' || *p > '9'))
    p++;
  char *end;
  unsigned long n = strtoul (p, &end, 10);
  if (!*p || *end || n == 0 || n > UINT32_MAX)
    return -1;
  *node = (uint32_t) n;
  return 0;
}

static bool
need_cluster (struct ctl_req *req)
{
  if (cowd.clustered)
    return true;
  reply_fmt (req, COW_E_NOT_CLUSTERED, "this cowd runs standalone; cluster "
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
  double gap, busy, sgap, sbusy;
  uint64_t slow;
  probe_get (&gap, &busy, &slow);
  probe_synced (&sgap, &sbusy);
  if (json)
    {
      sb_printf (&sb, "{\"local\":%u,\"quorate\":%s,\"ring_id\":%" PRIu64
                 ",\"synced\":%s,\"volumes\":%zu,\"loop\":{\"max_gap_ms\":%.3f,"
                 "\"max_busy_ms\":%.3f,\"gaps_over_10ms\":%" PRIu64
                 ",\"sync_gap_ms\":%.3f,\"sync_busy_ms\":%.3f,"
                 "\"sync_step_ms\":%.3f},\"members\":[", cluster_nodeid (),
                 cluster_quorate () ? "true" : "false", cluster_ring_id (),
                 cluster_synced () ? "true" : "false", cluster_table_size (),
                 gap, busy, slow, sgap, sbusy, cluster_sync_max_step_ms ());
      for (size_t i = 0; i < n; i++)
        sb_printf (&sb, "%s%u", i ? "," : "", m[i]);
      sb_puts (&sb, "]}\n");
    }
  else
    {
      sb_printf (&sb, "local node: %u\nquorate:    %s\nring id:    %" PRIu64
                 "\nmembers:   ", cluster_nodeid (),
                 cluster_quorate () ? "yes" : "NO", cluster_ring_id ());
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
    return reply_fmt (req, COW_E_NO_SUCH_NODE, "volume %s: cannot migrate: "
                      "node %u is not a member of cluster %s", argv[1], to,
                      cowd.cluster_name);
  int r = cluster_migrate (argv[1], to);
  if (r < 0)
    return reply_fmt (req, r == -ENOTCONN ? COW_E_NO_QUORUM : r, "volume %s:"
                      " cannot migrate: %s", argv[1], r == -ENOTCONN
                      ? "this node is not quorate" : strerror (-r));
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
        return reply_fmt (req, COW_E_NO_QUORUM, "cannot confirm node %u: "
                          "this node is not quorate", node);
      qb_log (LOG_WARNING, "cluster: operator confirmed node %u is down",
              node);
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
            sb_printf (&sb, "%s: waiting for node %u to be fenced\n",
                       e->name, cv->fenced_node);
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
        return reply_fmt (req, COW_E_NOT_ATTACHED, "volume %s is not "
                          "attached", e->name);
      if (fencing_probe (e, out, sizeof out) < 0)
        return reply_fmt (req, COW_E_IO, "%s", out);
      return reply_fmt (req, 0, json ? "{\"volume\":\"%s\",\"result\":"
                        "\"%s\"}\n" : "%s: %s\n", e->name, out);
    }
  reply_usage (req, argv[0]);
}

static void
handoff_json (struct strbuf *sb, const char *key, const double *ms,
              unsigned n)
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
  if (json)
    {
      sb_puts (&sb, "{");
      handoff_json (&sb, "served", cowd.handoff_ms, cowd.nhandoff);
      sb_puts (&sb, ",");
      handoff_json (&sb, "held", cowd.held_ms, cowd.nheld);
      sb_puts (&sb, "}\n");
    }
  for (unsigned i = 0; i < cowd.nhandoff && !json; i++)
    sb_printf (&sb, "served %.3f\n", cowd.handoff_ms[i]);
  for (unsigned i = 0; i < cowd.nheld && !json; i++)
    sb_printf (&sb, "held %.3f\n", cowd.held_ms[i]);
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}
#endif

static void
cmd_help (struct ctl_req *req, int argc, char **argv, bool json)
{
  struct strbuf sb = STRBUF_INIT;
  ctl_usage (&sb);
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

/* cowctl debug dump: write the blackbox (cowd.c) where the operator
 * reads it with qb-blackbox. */
static void
cmd_debug (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2 || strcmp (argv[1], "dump") != 0)
    return reply_usage (req, argv[0]);
  char path[COW_ERRLEN / 2];
  int r = blackbox_dump (path, sizeof path);
  if (r < 0)
    return reply_fmt (req, r, "cannot write the blackbox to %s: %s", path,
                      strerror (-r));
  struct strbuf sb = STRBUF_INIT;
  if (json)
    {
      sb_puts (&sb, "{\"blackbox\":");
      sb_json_str (&sb, path);
      sb_puts (&sb, "}\n");
    }
  else
    sb_printf (&sb, "%s\n", path);
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

/* The handlers of the commands in ctl-usage.c's list, by name. */
static const struct cmd cmds[] = {
  { "create", cmd_create },
  { "attach", cmd_attach },
  { "detach", cmd_detach },
  { "delete", cmd_delete },
  { "list", cmd_list },
  { "status", cmd_status },
  { "stats", cmd_stats },
  { "hydrate", cmd_hydrate },
  { "unbase", cmd_unbase },
  { "debug", cmd_debug },
  { "help", cmd_help },
#ifdef HAVE_COROSYNC
  { "nodes", cmd_nodes },
  { "migrate", cmd_migrate },
  { "fence", cmd_fence },
  { "handoff-times", cmd_handoff_stats },
#endif
};

void
cmds_dispatch (struct ctl_req *req)
{
  int argc = ctl_req_argc (req);
  char **argv = ctl_req_argv (req);
  bool json = ctl_req_flags (req) & CTL_F_JSON;
  const struct ctl_command *c = argc >= 1 ? ctl_command_find (argv[0]) : NULL;
  if (argc < 1)
    return reply_fmt (req, COW_E_USAGE, "no command given");
  if (!c)
    return reply_fmt (req, COW_E_USAGE, "unknown command '%s' (see cowctl "
                      "help)", argv[0]);
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp (argv[0], cmds[i].name) == 0)
      return cmds[i].fn (req, argc, argv, json);
  reply_fmt (req, COW_E_NOT_CLUSTERED, "%s: this cowd was built without "
             "corosync; cluster commands are not available", argv[0]);
}
