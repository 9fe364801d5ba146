/* SPDX-License-Identifier: GPL-2.0-or-later */
/* export.c: `cowctl export NAME --to DEVICE [--rate MB/s] [--no-wait]`.
 *
 * cowd starts the export and answers at once (with its id); cowctl then
 * follows it with `status NAME --json` (the "export" object) every second
 * (half a second on a terminal) and shows its progress as hydrate --wait
 * does, until it is done, failed or cancelled.  It ends when the object
 * is gone or has another id: the volume was detached or cowd restarted
 * (an export does not survive either).  --no-wait returns once it
 * started; --cancel and --no-wait are answered as cowd says.  With
 * --json nothing is printed but the final object (or the error object).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "cli.h"
#include "wait.h"

/* Take --no-wait out of the command; is it a plain call (cancel, no
 * wait)? */
static bool
export_plain (struct cli *c)
{
  bool plain = false;
  for (int i = 1; i < c->argc; i++)
    if (strcmp (c->argv[i], "--no-wait") == 0)
      {
        memmove (&c->argv[i], &c->argv[i + 1],
                 (size_t) (c->argc - i) * sizeof *c->argv);
        c->argc--, i--;
        plain = true;
      }
    else if (strcmp (c->argv[i], "--cancel") == 0)
      plain = true;
  return plain;
}

/* The JSON string member key of obj, unescaped (\" and \\ only: cowd's
 * sentences), into out. */
static void
export_json_str (const char *obj, const char *key, char *out, size_t len)
{
  char pat[40];
  size_t n = 0;
  snprintf (pat, sizeof pat, "\"%s\":\"", key);
  const char *p = obj ? strstr (obj, pat) : NULL;
  for (p = p ? p + strlen (pat) : ""; *p && *p != '"' && n + 1 < len; p++)
    out[n++] = *p == '\\' && p[1] ? *++p : *p;
  out[n] = '\0';
}

static int
export_code (const char *name)
{
  for (int k = COW_E_FIRST; k < COW_E_END; k++)
    if (strcmp (name, cow_err_name (k)) == 0)
      return k;
  return COW_E_IO;
}

/* The export ended: the final word. */
static int
export_end (const struct cli *c, const char *name, const struct progress *pg)
{
  char msg[4096], code[32], target[4096];
  if (strcmp (pg->state, "done") != 0)
    {
      export_json_str (pg->obj, "error", msg, sizeof msg);
      export_json_str (pg->obj, "code", code, sizeof code);
      return cli_error (c, export_code (code), msg);
    }
  export_json_str (pg->obj, "target", target, sizeof target);
  if (c->json)
    printf ("{\"name\":\"%s\",\"export\":%s}\n", name, pg->obj);
  else
    printf ("%s: exported to %s: %.0f bytes in %.3f s (%.1f MB/s)\n", name,
            target, wait_num (pg->obj, "bytes"),
            wait_num (pg->obj, "elapsed_s"), pg->rate);
  return 0;
}

/* The export's id in an answer or object (0: none). */
static unsigned long long
export_id (const char *text)
{
  const char *p = text ? strstr (text, "\"id\":") : NULL;
  return p ? strtoull (p + 5, NULL, 10) : 0;
}

static int
export_follow (const struct cli *c, const char *name, unsigned long long id)
{
  bool tty = !c->json && isatty (STDOUT_FILENO);
  struct progress pg = { .obj = NULL };
  char label[128];
  int last = -1, r;
  snprintf (label, sizeof label, "%s export", name);
  while ((r = wait_poll (c->run_dir, name, "export", &pg)) == 0
         && export_id (pg.obj) == id)
    {
      bool end = strcmp (pg.state, "running") != 0;
      if (!c->json && !end && (tty || (int) pg.percent != last))
        wait_show (label, &pg, tty);
      last = (int) pg.percent;
      if (end)
        {
          if (tty)
            putchar ('\n');
          r = export_end (c, name, &pg);
          free (pg.obj);
          return r;
        }
      usleep (tty ? 500000 : 1000000);
    }
  free (pg.obj);
  if (r < 0)
    return cli_errorf (c, COW_E_UNREACHABLE,
                       "volume %s: the export ended "
                       "without a result: cowd at %s went away (an export "
                       "does not survive a restart)",
                       name, c->run_dir);
  return cli_errorf (c, COW_E_HELD,
                     "volume %s: the export ended without a "
                     "result: the volume was detached or cowd restarted (an "
                     "export does not survive either)",
                     name);
}

int
export_run (struct cli *c)
{
  if (export_plain (c))
    return -1; /* the plain call, as main makes it */
  struct ctl_answer a = { 0 };
  int r = ctl_call (c->run_dir, c->flags | CTL_F_JSON, c->argc, c->argv, &a,
                    c->timeout * 1000);
  if (r < 0 || a.status != 0)
    {
      r = r < 0 ? cli_unreachable (c, r, &a) : cli_answer (c, &a);
      free (a.text);
      return r;
    }
  unsigned long long id = export_id (a.text);
  const char *name = NULL;
  for (int i = 1; i < c->argc; i++)
    if (strcmp (c->argv[i], "--to") == 0 || strcmp (c->argv[i], "--rate") == 0)
      i++;
    else if (c->argv[i][0] != '-')
      name = c->argv[i];
  free (a.text);
  return export_follow (c, name ? name : "", id);
}
