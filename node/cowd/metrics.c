/* SPDX-License-Identifier: GPL-2.0-or-later */
/* metrics.c: the counters of `cowctl stats` for Prometheus, in the text
 * exposition format, in the file named by metrics-file in cowd.conf, for
 * node_exporter's textfile collector.
 *
 * Every metrics-interval-ms (default 5000) the whole file is written to
 * NAME.tmp and renamed over NAME, so a reader sees the old file or the new
 * one, never half of one.  Each family has its HELP and TYPE lines and one
 * sample per attached volume, labelled volume="NAME" (volume names are
 * letters, digits, '.', '_' and '-': nothing to escape).  Counters are
 * monotonic since the volume was attached (Prometheus handles the reset
 * of a re-attach like a process restart).  Runs on the main loop.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "cowd.h"
#include "loop.h"

struct metric
{
  const char *name, *type, *help;
  size_t off; /* of a uint64_t in struct vol_stats */
};

#define M(n, f, h)                                                             \
  {                                                                            \
    "cowherd_volume_" n, "counter", h, offsetof (struct vol_stats, f)          \
  }
static const struct metric counters[] = {
  M ("reads_total", reads, "Read requests."),
  M ("writes_total", writes, "Write requests."),
  M ("flushes_total", flushes, "Flush requests."),
  M ("trims_total", trims, "Trim requests."),
  M ("write_zeroes_total", zeroes, "Write-zeroes requests."),
  M ("read_bytes_total", bytes_read, "Bytes read by clients."),
  M ("written_bytes_total", bytes_written, "Bytes written by clients."),
  M ("base_read_bytes_total", read_base_bytes, "Bytes read from the base."),
  M ("cow_faults_total", cow_faults,
     "Chunks moved into the CoW layer by "
     "client writes."),
  M ("commits_total", commits, "Bitmap commits (group commits)."),
  M ("committed_requests_total", commit_faults,
     "Requests covered by "
     "bitmap commits."),
  M ("errors_total", errors, "Requests that failed."),
  M ("hydrated_chunks_total", hydrated_chunks,
     "Chunks copied by "
     "hydration."),
  M ("takeovers_total", takeovers, "Times this node took the volume."),
  M ("handoffs_total", handoffs, "Times this node handed the volume off."),
};
#undef M

static qb_loop_timer_handle metrics_timer;

static void
metrics_family (FILE *f, const char *name, const char *type, const char *help)
{
  fprintf (f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_counters (FILE *f)
{
  for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
    {
      metrics_family (f, counters[i].name, counters[i].type, counters[i].help);
      for (struct vol_entry *e = cowd.vols; e; e = e->next)
        {
          struct vol_stats st;
          if (!e->vol)
            continue;
          vol_get_stats (e->vol, &st);
          fprintf (f, "%s{volume=\"%s\"} %" PRIu64 "\n", counters[i].name,
                   e->name, *(uint64_t *) ((char *) &st + counters[i].off));
        }
    }
}

static void
metrics_gauges (FILE *f)
{
  static const char *names[]
      = { "cowherd_volume_cow_chunks", "cowherd_volume_chunks",
          "cowherd_volume_in_flight" };
  static const char *helps[]
      = { "Chunks in the CoW layer.", "Chunks of the volume.",
          "Requests in flight." };
  for (int i = 0; i < 3; i++)
    {
      metrics_family (f, names[i], "gauge", helps[i]);
      for (struct vol_entry *e = cowd.vols; e; e = e->next)
        {
          struct vol_hydrate h;
          struct vol_stats st;
          if (!e->vol)
            continue;
          vol_hydrate_info (e->vol, &h);
          vol_get_stats (e->vol, &st);
          uint64_t val[] = { h.done, h.total, st.in_flight };
          fprintf (f, "%s{volume=\"%s\"} %" PRIu64 "\n", names[i], e->name,
                   val[i]);
        }
    }
}

static void
metrics_latency (FILE *f)
{
  const char *n = "cowherd_volume_commit_duration_seconds";
  metrics_family (f, n, "summary",
                  "Time from a bitmap commit's start to "
                  "its bits being durable (quantiles: upper bounds).");
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    {
      struct vol_stats st;
      if (!e->vol)
        continue;
      vol_get_stats (e->vol, &st);
      uint64_t count = 0;
      for (unsigned b = 0; b < VOL_HIST_BUCKETS; b++)
        count += st.commit_hist[b];
      fprintf (f,
               "%s{volume=\"%s\",quantile=\"0.5\"} %g\n"
               "%s{volume=\"%s\",quantile=\"0.99\"} %g\n"
               "%s_sum{volume=\"%s\"} %g\n%s_count{volume=\"%s\"} %" PRIu64
               "\n",
               n, e->name, vol_stats_quantile (&st, 0.5), n, e->name,
               vol_stats_quantile (&st, 0.99), n, e->name,
               (double) st.commit_ns_sum / 1e9, n, e->name, count);
    }
}

static int
metrics_write (void)
{
  char *tmp = NULL;
  if (asprintf (&tmp, "%s.tmp", cowd.metrics_file) < 0)
    return -ENOMEM;
  FILE *f = fopen (tmp, "w");
  int r = f ? 0 : -errno;
  if (f)
    {
      metrics_counters (f);
      metrics_gauges (f);
      metrics_latency (f);
      if (fclose (f) != 0)
        r = -errno;
    }
  if (r == 0 && rename (tmp, cowd.metrics_file) < 0)
    r = -errno;
  free (tmp);
  return r;
}

static void
metrics_tick (void *data)
{
  static int last_err;
  int r = metrics_write ();
  if (r < 0 && r != last_err)
    qb_log (LOG_ERR, "cowd: writing the metrics file %s failed: %s",
            cowd.metrics_file, strerror (-r));
  last_err = r;
  qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW,
                     (uint64_t) (cowd.metrics_interval_ms > 100
                                     ? cowd.metrics_interval_ms
                                     : 100)
                         * 1000000ull,
                     NULL, metrics_tick, &metrics_timer);
}

void
metrics_start (void)
{
  if (cowd.metrics_file && *cowd.metrics_file)
    metrics_tick (NULL);
}
