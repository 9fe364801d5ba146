/* SPDX-License-Identifier: GPL-2.0-or-later */
/* top.c: `cowctl top`: the IO rates of every volume this cowd serves.
 *
 * cowctl asks cowd for a sample of its counters (the `top` command,
 * ctl-cmds.c: a stamp of cowd's monotonic clock, then one line per open
 * volume with its totals and commit latency histogram), waits an
 * interval, asks again, and shows the differences divided by the time
 * between the two stamps: reads/s, writes/s, MB/s (read + written),
 * CoW faults/s, commits/s and the p99 of the commits of the interval
 * (from the histogram's differences: the upper bound of the bucket).
 * Rows are sorted by activity (requests, then bytes, then name).
 *
 * On a terminal the view is redrawn in place each interval; otherwise
 * each refresh is a header line and one plain line per volume; with
 * --json each refresh is one JSON object on its own line, with the
 * interval's counts as well as the rates.  --once shows one refresh,
 * -n N shows N (default: until interrupted), --interval SEC sets the
 * interval (default 1 s).  A volume that appears during an interval
 * counts from zero (its counters start when it is opened).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"
#include "cli.h"

#define TOP_HIST 32 /* VOL_HIST_BUCKETS of the engine */

struct top_vol
{
  char name[256];
  uint64_t c[6]; /* reads writes rbytes wbytes faults commits */
  uint64_t hist[TOP_HIST];
};

struct top_sample
{
  uint64_t ns;
  struct top_vol *v;
  size_t n;
};

struct top_row
{
  const char *name;
  uint64_t d[6];
  double p99_ms; /* -1: no commit */
};

static int
top_parse_line (struct top_vol *v, const char *line)
{
  int off = 0;
  if (sscanf (line,
              "%255s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
              " %" SCNu64 "%n",
              v->name, &v->c[0], &v->c[1], &v->c[2], &v->c[3], &v->c[4],
              &v->c[5], &off)
      != 7)
    return -1;
  for (int i = 0; i < TOP_HIST; i++)
    {
      int k = 0;
      if (sscanf (line + off, " %" SCNu64 "%n", &v->hist[i], &k) != 1)
        return -1;
      off += k;
    }
  return 0;
}

/* Ask cowd for one sample: 0, or an exit status (reported). */
static int
top_sample (const struct cli *c, struct top_sample *s)
{
  char *argv[] = { (char *) "top", NULL };
  struct ctl_answer a = { 0 };
  int r = ctl_call (c->run_dir, 0, 1, argv, &a, c->timeout * 1000);
  if (r < 0)
    return cli_unreachable (c, r, &a);
  if (a.status != 0)
    {
      r = cli_errorf (c, COW_E_INTERNAL, "%s", a.text);
      free (a.text);
      return r;
    }
  size_t lines = 0;
  for (const char *p = a.text; *p; p++)
    lines += *p == '\n';
  s->v = calloc (lines + 1, sizeof *s->v);
  s->n = 0;
  char *save = NULL, *l = strtok_r (a.text, "\n", &save);
  r = s->v && l && sscanf (l, "sample 1 %" SCNu64, &s->ns) == 1 ? 0 : -1;
  while (r == 0 && (l = strtok_r (NULL, "\n", &save)))
    r = top_parse_line (&s->v[s->n++], l);
  free (a.text);
  if (r < 0)
    return cli_error (c, COW_E_INTERNAL,
                      "cowd's sample of its counters "
                      "does not parse (are cowctl and cowd of one "
                      "release?)");
  return 0;
}

/* The upper bound (ms) of the bucket below which 99% of the commits of
 * the interval finished; -1 when there was none. */
static double
top_p99 (const uint64_t *now, const uint64_t *before)
{
  uint64_t d[TOP_HIST], total = 0, acc = 0;
  for (int i = 0; i < TOP_HIST; i++)
    total += d[i] = now[i] - (before ? before[i] : 0);
  if (total == 0)
    return -1;
  for (int i = 0; i < TOP_HIST; i++)
    if ((acc += d[i]) * 100 >= total * 99)
      return (double) (1ull << i) / 1000.0;
  return -1;
}

static const struct top_vol *
top_find (const struct top_sample *s, const char *name, size_t *hint)
{
  /* Both samples list the volumes in cowd's (sorted) order: look from
   * where the last one was found first, so a refresh stays linear. */
  for (size_t k = 0; k < s->n; k++)
    {
      size_t i = (*hint + k) % s->n;
      if (strcmp (s->v[i].name, name) == 0)
        {
          *hint = i + 1;
          return &s->v[i];
        }
    }
  return NULL;
}

static int
top_cmp (const void *x, const void *y)
{
  const struct top_row *a = x, *b = y;
  uint64_t ra = a->d[0] + a->d[1], rb = b->d[0] + b->d[1];
  uint64_t ba = a->d[2] + a->d[3], bb = b->d[2] + b->d[3];
  if (ra != rb)
    return ra > rb ? -1 : 1;
  if (ba != bb)
    return ba > bb ? -1 : 1;
  return strcmp (a->name, b->name);
}

static struct top_row *
top_rows (const struct top_sample *s0, const struct top_sample *s1)
{
  struct top_row *rows = calloc (s1->n + 1, sizeof *rows);
  size_t hint = 0;
  for (size_t i = 0; rows && i < s1->n; i++)
    {
      const struct top_vol *o = top_find (s0, s1->v[i].name, &hint);
      rows[i].name = s1->v[i].name;
      for (int k = 0; k < 6; k++)
        rows[i].d[k]
            = s1->v[i].c[k] - (o && o->c[k] <= s1->v[i].c[k] ? o->c[k] : 0);
      rows[i].p99_ms = top_p99 (s1->v[i].hist, o ? o->hist : NULL);
    }
  if (rows)
    qsort (rows, s1->n, sizeof *rows, top_cmp);
  return rows;
}

static void
top_json (const struct top_row *r, size_t n, double dt)
{
  struct strbuf sb = STRBUF_INIT;
  sb_printf (&sb, "{\"interval_s\":%.3f,\"volumes\":[", dt);
  for (size_t i = 0; i < n; i++)
    {
      sb_printf (&sb, "%s{\"name\":", i ? "," : "");
      sb_json_str (&sb, r[i].name);
      sb_printf (&sb,
                 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
                 ",\"bytes_read\":%" PRIu64 ",\"bytes_written\":%" PRIu64
                 ",\"cow_faults\":%" PRIu64 ",\"commits\":%" PRIu64
                 ",\"reads_s\":%.3f,\"writes_s\":%.3f,\"mb_s\":%.6f,"
                 "\"faults_s\":%.3f,\"commits_s\":%.3f,\"commit_p99_ms\":",
                 r[i].d[0], r[i].d[1], r[i].d[2], r[i].d[3], r[i].d[4],
                 r[i].d[5], r[i].d[0] / dt, r[i].d[1] / dt,
                 (r[i].d[2] + r[i].d[3]) / dt / 1e6, r[i].d[4] / dt,
                 r[i].d[5] / dt);
      if (r[i].p99_ms < 0)
        sb_puts (&sb, "null}");
      else
        sb_printf (&sb, "%.3f}", r[i].p99_ms);
    }
  printf ("%s]}\n", sb_str (&sb));
  sb_free (&sb);
}

static void
top_text (const struct top_row *r, size_t n, double dt, bool tty)
{
  time_t now = time (NULL);
  char stamp[16];
  strftime (stamp, sizeof stamp, "%H:%M:%S", localtime (&now));
  if (tty)
    fputs ("\033[H\033[2J", stdout);
  printf ("cowctl top %s: %zu volumes, interval %.1f s\n%-20s %9s %9s %9s "
          "%9s %9s %11s\n",
          stamp, n, dt, "NAME", "READS/s", "WRITES/s", "MB/s", "FAULTS/s",
          "COMMITS/s", "COMMIT-P99");
  for (size_t i = 0; i < n; i++)
    {
      char p99[24] = "-";
      if (r[i].p99_ms >= 0)
        snprintf (p99, sizeof p99, "<%.3f ms", r[i].p99_ms);
      printf ("%-20s %9.1f %9.1f %9.2f %9.1f %9.1f %11s\n", r[i].name,
              r[i].d[0] / dt, r[i].d[1] / dt,
              (r[i].d[2] + r[i].d[3]) / dt / 1e6, r[i].d[4] / dt,
              r[i].d[5] / dt, p99);
    }
  if (!tty)
    putchar ('\n');
}

struct top_opts
{
  long iterations; /* 0: until interrupted */
  double interval; /* seconds */
};

/* 0, or an exit status (reported). */
static int
top_parse (const struct cli *c, struct top_opts *o)
{
  *o = (struct top_opts){ .iterations = 0, .interval = 1.0 };
  for (int i = 1; i < c->argc; i++)
    {
      const char *a = c->argv[i], *v = i + 1 < c->argc ? c->argv[i + 1] : "";
      char *end;
      if (strcmp (a, "--once") == 0)
        o->iterations = 1;
      else if (strcmp (a, "-n") == 0
               && (o->iterations = strtol (v, &end, 10),
                   *v && !*end && o->iterations > 0))
        i++;
      else if (strcmp (a, "--interval") == 0
               && (o->interval = strtod (v, &end),
                   *v && !*end && o->interval >= 0.1 && o->interval <= 3600))
        i++;
      else
        return cli_errorf (c, COW_E_USAGE,
                           "usage: cowctl top [--once] [-n "
                           "ITERATIONS] [--interval SEC] (ITERATIONS a whole "
                           "number above 0, SEC from 0.1 to 3600)");
    }
  return 0;
}

static void
top_free (struct top_sample *s)
{
  free (s->v);
  s->v = NULL;
}

int
top_run (const struct cli *c)
{
  struct top_opts o;
  struct top_sample s0 = { 0 }, s1 = { 0 };
  bool tty = isatty (STDOUT_FILENO) && !c->json;
  int r = top_parse (c, &o);
  if (r == 0)
    r = top_sample (c, &s0);
  uint64_t next = clock_now_ns ();
  for (long it = 0; r == 0 && (o.iterations == 0 || it < o.iterations); it++)
    {
      /* Sleep to a deadline, so slow answers do not add up. */
      next += (uint64_t) (o.interval * 1e9);
      uint64_t now = clock_now_ns ();
      if (next > now)
        usleep ((useconds_t) ((next - now) / 1000));
      if ((r = top_sample (c, &s1)) != 0)
        break;
      double dt = (double) (s1.ns - s0.ns) / 1e9;
      struct top_row *rows = top_rows (&s0, &s1);
      if (!rows)
        r = cli_error (c, COW_E_INTERNAL, "out of memory");
      else if (c->json)
        top_json (rows, s1.n, dt);
      else
        top_text (rows, s1.n, dt, tty);
      fflush (stdout);
      free (rows);
      top_free (&s0);
      s0 = s1;
      s1 = (struct top_sample){ 0 };
    }
  top_free (&s0);
  top_free (&s1);
  return r;
}
