/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cowctl: the cowherd admin CLI.  It parses only its global options and
 * checks the command against the shared list (ctl-usage.c), then sends
 * the command with its arguments to cowd over the control channel
 * (ctl.h); cowd parses the command and formats the answer, a table or a
 * sentence, or JSON with --json.  The one argument it rewrites: create's
 * relative --base and --cow paths, made absolute here, since cowd resolves
 * nothing in its own directory.  Two commands are cowctl's own work over
 * the channel: create --from FILE (batch.c) sends the file's definitions
 * in batches, and top (top.c) samples cowd's counters each interval.
 *
 * Errors: "cowctl: SENTENCE" on stderr, or with --json exactly one
 * object on stdout, {"error": {"code": "CODE", "message": "SENTENCE"}},
 * where CODE is a stable name (errcode.h, cowctl(8) ERRORS).  Exit
 * status: 0 success, 1 error, 2 usage, 3 cowd unreachable.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "cli.h"
#include "wait.h"
#include "strbuf.h"

static void
cli_usage (FILE *f)
{
  struct strbuf sb = STRBUF_INIT;
  ctl_usage (&sb);
  fprintf (f,
           "usage: cowctl [--run-dir DIR] [--json] [--timeout SEC] "
           "COMMAND [ARGS]\n\n%s\nThe run directory selects one cowd: "
           "--run-dir, else $COWHERD_RUN_DIR,\nelse " RUNSTATEDIR
           "/cowherd.  See cowctl(8).\n",
           sb_str (&sb));
  sb_free (&sb);
}

/* Report an error as the contract says, and return its exit status. */
int
cli_error (const struct cli *c, int code, const char *msg)
{
  int status = code == COW_E_USAGE         ? CTL_EXIT_USAGE
               : code == COW_E_UNREACHABLE ? CTL_EXIT_UNREACHABLE
                                           : CTL_EXIT_ERROR;
  size_t n = strlen (msg);
  while (n && msg[n - 1] == '\n')
    n--;
  if (!c->json)
    {
      fprintf (stderr, "cowctl: %.*s\n", (int) n, msg);
      return status;
    }
  char *m = strndup (msg, n);
  struct strbuf sb = STRBUF_INIT;
  sb_printf (
      &sb, "{\"error\": {\"code\": \"%s\", \"message\": ", cow_err_name (code));
  sb_json_str (&sb, m ? m : "out of memory");
  sb_puts (&sb, "}}\n");
  fputs (sb_str (&sb), stdout);
  sb_free (&sb);
  free (m);
  return status;
}

int
cli_errorf (const struct cli *c, int code, const char *fmt, ...)
{
  struct strbuf sb = STRBUF_INIT;
  va_list ap;
  va_start (ap, fmt);
  sb_vprintf (&sb, fmt, ap);
  va_end (ap);
  int r = cli_error (c, code, sb_str (&sb));
  sb_free (&sb);
  return r;
}

/* Seconds: a whole number from 1 to a day. */
static int
cli_parse_timeout (const char *s, int *out)
{
  char *end;
  errno = 0;
  long v = strtol (s, &end, 10);
  if (errno || end == s || *end || v < 1 || v > 86400)
    return -1;
  *out = (int) v;
  return 0;
}

/* Parse argv into c.  Returns -1 to go on, else an exit status. */
static int
cli_parse (struct cli *c, int argc, char **argv)
{
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "--json") == 0)
      c->json = true;
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      if (strcmp (a, "--json") == 0)
        c->flags |= CTL_F_JSON;
      else if (c->argc > 0)
        c->argv[c->argc++] = argv[i];
      else if (strcmp (a, "--run-dir") == 0 || strcmp (a, "--timeout") == 0)
        {
          if (i + 1 >= argc)
            return cli_errorf (c, COW_E_USAGE, "option '%s' needs a value", a);
          if (a[2] == 'r')
            c->run_dir = argv[++i];
          else if (cli_parse_timeout (argv[++i], &c->timeout) < 0)
            return cli_errorf (c, COW_E_USAGE,
                               "--timeout '%s' is not a "
                               "whole number of seconds from 1 to 86400",
                               argv[i]);
        }
      else if (strncmp (a, "--run-dir=", 10) == 0)
        c->run_dir = a + 10;
      else if (strcmp (a, "--help") == 0 || strcmp (a, "-h") == 0
               || strcmp (a, "help") == 0)
        {
          cli_usage (stdout);
          return 0;
        }
      else if (strcmp (a, "--version") == 0)
        {
          printf ("cowctl %s\n", PACKAGE_VERSION);
          return 0;
        }
      else if (a[0] == '-')
        return cli_errorf (c, COW_E_USAGE,
                           "unknown option '%s' (see cowctl "
                           "--help)",
                           a);
      else if (!ctl_command_find (a))
        return cli_errorf (c, COW_E_USAGE,
                           "unknown command '%s' (see "
                           "cowctl help)",
                           a);
      else
        c->argv[c->argc++] = argv[i];
    }
  if (c->argc == 0)
    {
      if (c->json)
        return cli_error (c, COW_E_USAGE,
                          "no command given (see cowctl "
                          "help)");
      cli_usage (stderr);
      return CTL_EXIT_USAGE;
    }
  return -1;
}

/* cowd could not be asked: say why, with the exit status to use. */
int
cli_unreachable (const struct cli *c, int r, const struct ctl_answer *a)
{
  if (r == -EPROTONOSUPPORT)
    return cli_errorf (c, COW_E_UNREACHABLE, "%s at %s", a->why, c->run_dir);
  if (r == -E2BIG)
    return cli_errorf (c, COW_E_USAGE,
                       "the command is too long for the "
                       "control channel (at most %u arguments, %d bytes)",
                       CTL_ARGC_MAX, CTL_MAX_MSG);
  if (r == -EPERM || r == -EACCES)
    return cli_errorf (c, COW_E_UNREACHABLE,
                       "cowd at %s refused the "
                       "connection: permission denied (only root or the "
                       "user cowd runs as may use it)",
                       c->run_dir);
  if (r == -ETIMEDOUT || r == -EAGAIN)
    return cli_errorf (c, COW_E_TIMEOUT,
                       "cowd at %s did not answer within "
                       "%d seconds",
                       c->run_dir, c->timeout);
  if (r == -EPROTO)
    return cli_errorf (c, COW_E_INTERNAL,
                       "the answer of cowd at %s does "
                       "not parse: %s",
                       c->run_dir, a->why);
  if (r == -ECONNRESET)
    return cli_errorf (c, COW_E_UNREACHABLE,
                       "cowd at %s went away before "
                       "it answered (it exited or was stopped); whether the "
                       "command took effect is unknown: look with cowctl "
                       "status",
                       c->run_dir);
  if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTCONN)
    return cli_errorf (c, COW_E_UNREACHABLE,
                       "no cowd serves run directory "
                       "%s",
                       c->run_dir);
  return cli_errorf (c, COW_E_UNREACHABLE, "cannot reach cowd at %s: %s",
                     c->run_dir, strerror (-r));
}

int
cli_answer (const struct cli *c, const struct ctl_answer *a)
{
  const char *out = a->text ? a->text : "";
  if (a->status != 0)
    {
      int code = COW_E_INTERNAL;
      for (int k = COW_E_FIRST; k < COW_E_END; k++)
        if (strcmp (a->code, cow_err_name (k)) == 0)
          code = k;
      int st = cli_error (c, code, out);
      /* A code this cowctl does not know keeps cowd's exit status. */
      return code == COW_E_INTERNAL ? a->status : st;
    }
  if (*out)
    fprintf (stdout, "%s%s", out, out[strlen (out) - 1] == '\n' ? "" : "\n");
  return 0;
}

/* A path relative to cowctl's working directory, made absolute: cowd
 * runs elsewhere (in / once it is a daemon) and keeps what it is given.
 * URLs and absolute paths are left alone.  Returns a string to free, or
 * NULL when arg needs no change. */
static char *
cowctl_absolute (const char *prefix, const char *path)
{
  char cwd[4096], *out;
  while (path[0] == '.' && path[1] == '/')
    path += 2;
  if (path[0] == '/' || path[0] == '\0' || strstr (path, "://")
      || !getcwd (cwd, sizeof cwd)
      || asprintf (&out, "%s%s/%s", prefix, cwd, path) < 0)
    return NULL;
  return out;
}

/* create's --base and --cow, export's --to (as "--base PATH" or
 * "--base=PATH"); the strings made are also put in made[]
 * (NULL-terminated, at most n) for the caller to free. */
void
cowctl_absolute_paths (char **args, int n, char **made)
{
  static const char *const create_opts[] = { "--base", "--cow", NULL };
  static const char *const export_opts[] = { "--to", NULL };
  const char *const *opts = NULL;
  if (n > 0 && strcmp (args[0], "create") == 0)
    opts = create_opts;
  else if (n > 0 && strcmp (args[0], "export") == 0)
    opts = export_opts;
  if (!opts)
    return;
  for (int i = 1; i < n; i++)
    for (size_t k = 0; opts[k]; k++)
      {
        size_t l = strlen (opts[k]);
        char *abs = NULL;
        if (strcmp (args[i], opts[k]) == 0 && i + 1 < n)
          abs = cowctl_absolute ("", args[++i]);
        else if (strncmp (args[i], opts[k], l) == 0 && args[i][l] == '=')
          {
            char prefix[16];
            snprintf (prefix, sizeof prefix, "%s=", opts[k]);
            abs = cowctl_absolute (prefix, args[i] + l + 1);
          }
        else
          continue;
        if (abs)
          args[i] = *made++ = abs;
        break;
      }
}

/* `hydrate NAME ... --wait`: take --wait out of the command (cowd does
 * not know it) and return the volume to wait for, else NULL. */
static const char *
hydrate_wait_arg (int *n, char **args)
{
  const char *name = NULL;
  bool wait = false;
  if (strcmp (args[0], "hydrate") != 0)
    return NULL;
  for (int i = 1; i < *n; i++)
    {
      if (strcmp (args[i], "--wait") == 0)
        {
          wait = true;
          memmove (&args[i], &args[i + 1], (size_t) (*n - i) * sizeof *args);
          (*n)--, i--;
        }
      else if (strcmp (args[i], "--rate") == 0)
        i++;
      else if (strcmp (args[i], "--cancel") == 0)
        return NULL;
      else if (args[i][0] != '-')
        name = args[i];
    }
  return wait ? name : NULL;
}

int
main (int argc, char **argv)
{
  struct cli c = { .run_dir = getenv ("COWHERD_RUN_DIR"), .timeout = 120 };
  c.argv = calloc ((size_t) argc + 1, sizeof *c.argv);
  if (!c.argv)
    return CTL_EXIT_ERROR;
  int r = cli_parse (&c, argc, argv);
  if (r >= 0)
    {
      free (c.argv);
      return r;
    }
  if (!c.run_dir || !*c.run_dir)
    c.run_dir = RUNSTATEDIR "/cowherd";
  char abs[PATH_MAX + 1];
  if (c.run_dir[0] != '/' && getcwd (abs, sizeof abs))
    {
      size_t l = strlen (abs);
      snprintf (abs + l, sizeof abs - l, "/%s", c.run_dir);
      c.run_dir = abs;
    }
  char **made = calloc ((size_t) c.argc + 1, sizeof *made);
  if (!made)
    return CTL_EXIT_ERROR;
  cowctl_absolute_paths (c.argv, c.argc, made);
  if (c.argc >= 2 && strcmp (c.argv[0], "create") == 0
      && strcmp (c.argv[1], "--from") == 0)
    r = batch_create (&c);
  else if (strcmp (c.argv[0], "top") == 0)
    r = top_run (&c);
  else if (strcmp (c.argv[0], "export") == 0)
    r = export_run (&c);
  if (r >= 0)
    {
      for (char **m = made; *m; m++)
        free (*m);
      free (made);
      free (c.argv);
      return r;
    }
  const char *wait_for = hydrate_wait_arg (&c.argc, c.argv);
  struct ctl_answer a = { 0 };
  r = ctl_call (c.run_dir, c.flags, c.argc, c.argv, &a, c.timeout * 1000);
  r = r < 0 ? cli_unreachable (&c, r, &a) : cli_answer (&c, &a);
  free (a.text);
  if (r == 0 && wait_for)
    r = wait_hydrated (c.run_dir, wait_for);
  for (char **m = made; *m; m++)
    free (*m);
  free (made);
  free (c.argv);
  return r;
}
