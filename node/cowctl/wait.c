/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wait.c: `cowctl hydrate NAME --wait`: after the command, poll cowd's
 * `status NAME` (JSON) once a second and show the hydration's progress
 * until the volume is hydrated (`cowctl export`, export.c, shows its
 * progress with the same poll and display).  On a terminal a bar redrawn
 * in place; otherwise one plain line each time the whole percent changes
 * (and at most one a second), so logs stay readable.  Exit 0 when hydrated, 1
 * when the hydration was cancelled or cowd cannot be reached.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "wait.h"

/* The number after "key": inside the "hydration" object of a status. */
double
wait_num (const char *obj, const char *key)
{
  char pat[40];
  snprintf (pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr (obj, pat);
  return p ? strtod (p + strlen (pat), NULL) : 0;
}

void
wait_str (const char *obj, const char *key, char *out, size_t len)
{
  char pat[40];
  snprintf (pat, sizeof pat, "\"%s\":\"", key);
  const char *p = strstr (obj, pat);
  size_t n = 0;
  if (p)
    for (p += strlen (pat); *p && *p != '"' && n + 1 < len; p++)
      out[n++] = *p;
  out[n] = '\0';
}

/* The object "key":{...} in a status answer, copied, or NULL. */
static char *
wait_object (const char *text, const char *key)
{
  char pat[40];
  snprintf (pat, sizeof pat, "\"%s\":{", key);
  const char *p = text ? strstr (text, pat) : NULL;
  if (!p)
    return NULL;
  p += strlen (pat) - 1;
  int depth = 0;
  bool str = false;
  for (const char *q = p; *q; q++)
    if (str)
      {
        if (*q == '\\' && q[1])
          q++;
        else if (*q == '"')
          str = false;
      }
    else if (*q == '"')
      str = true;
    else if (*q == '{')
      depth++;
    else if (*q == '}' && --depth == 0)
      return strndup (p, (size_t) (q - p + 1));
  return NULL;
}

int
wait_poll (const char *run_dir, const char *name, const char *key,
           struct progress *pg)
{
  char *argv[] = { (char *) "status", (char *) name, NULL };
  struct ctl_answer a = { 0 };
  int r = ctl_call (run_dir, CTL_F_JSON, 2, argv, &a, 30000);
  char *out = a.text;
  char *h = r == 0 && a.status == 0 ? wait_object (out, key) : NULL;
  if (!h)
    {
      if (strcmp (key, "hydration") == 0)
        fprintf (stderr, "cowctl: %s: cannot read the hydration progress%s%s",
                 name, out && r == 0 ? ": " : "\n", out && r == 0 ? out : "");
      free (out);
      return r < 0 ? r : 1;
    }
  wait_str (h, "state", pg->state, sizeof pg->state);
  wait_str (h, "error", pg->error, sizeof pg->error);
  pg->percent = wait_num (h, "percent");
  pg->done = (unsigned long long) wait_num (h, "done");
  pg->total = (unsigned long long) wait_num (h, "total");
  pg->rate = wait_num (h, "rate_mbs");
  pg->eta = wait_num (h, "eta_s");
  free (pg->obj);
  pg->obj = h;
  free (out);
  return 0;
}

void
wait_show (const char *name, const struct progress *pg, bool tty)
{
  char eta[32] = "";
  if (pg->eta >= 0 && strcmp (pg->state, "running") == 0)
    snprintf (eta, sizeof eta, " ETA %d:%02d", (int) pg->eta / 60,
              (int) pg->eta % 60);
  if (!tty)
    {
      printf ("%s: %s %.1f%% (%llu/%llu chunks) %.1f MB/s%s\n", name, pg->state,
              pg->percent, pg->done, pg->total, pg->rate, eta);
      fflush (stdout);
      return;
    }
  char bar[41];
  int fill = (int) (pg->percent * 40 / 100);
  for (int i = 0; i < 40; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[40] = '\0';
  printf ("\r%s [%s] %5.1f%% %llu/%llu %.1f MB/s%s   ", name, bar, pg->percent,
          pg->done, pg->total, pg->rate, eta);
  fflush (stdout);
}

int
wait_hydrated (const char *run_dir, const char *name)
{
  bool tty = isatty (STDOUT_FILENO);
  int last = -1;
  for (;;)
    {
      struct progress pg = { .obj = NULL };
      if (wait_poll (run_dir, name, "hydration", &pg) != 0)
        return CTL_EXIT_ERROR;
      free (pg.obj);
      bool end = strcmp (pg.state, "running") && strcmp (pg.state, "waiting");
      if (tty || (int) pg.percent != last || end)
        wait_show (name, &pg, tty);
      last = (int) pg.percent;
      if (end)
        {
          if (tty)
            putchar ('\n');
          if (strcmp (pg.state, "hydrated") == 0)
            return 0;
          fprintf (stderr,
                   "cowctl: %s: the hydration stopped before the "
                   "end (cancelled)\n",
                   name);
          return CTL_EXIT_ERROR;
        }
      usleep (tty ? 500000 : 1000000);
    }
}
