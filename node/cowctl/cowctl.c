/* cowctl: the cowherd admin CLI.  It parses only its global options and
 * sends the command with its arguments to cowd over the control channel
 * (ctl.h); cowd parses the command and formats the answer, a table or a
 * sentence, or JSON with --json.  `cowctl hydrate` polls for progress.
 * The one argument it rewrites: create's relative --base and --cow paths,
 * made absolute here, since cowd resolves nothing in its own directory. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "wait.h"

static const char usage_text[] =
  "usage: cowctl [--run-dir DIR] [--json] [--timeout SEC] COMMAND [ARGS]\n"
  "\n"
  "volumes:\n"
  "  create NAME --base BASE --cow COW [--chunk-size SIZE]\n"
  "         [--commit sync|flush|none] [--force] [--exclusive] [--buffered]\n"
  "  attach NAME [--incoming] [--accept-base-change]\n"
  "                               serve it; prints the NBD URI\n"
  "  detach NAME                  drain, commit, mark clean, stop serving\n"
  "  delete NAME                  forget a detached volume (data untouched)\n"
  "  list                         every volume this agent knows\n"
  "  status NAME                  state, size, CoW chunks, epoch, statistics\n"
  "  stats NAME                   IO statistics\n"
  "  hydrate NAME [--rate MB/s] [--wait]\n"
  "                               copy what is left of the base into the CoW\n"
  "  hydrate --cancel NAME        stop copying\n"
  "  unbase NAME                  forget the base of a hydrated volume\n"
  "cluster:\n"
  "  nodes                        members, quorum, ring id\n"
  "  migrate NAME --to NODE       hand ownership to another node\n"
  "  fence status | fence NODE | fence confirm NODE\n"
  "\n"
  "The run directory selects one cowd: --run-dir, else $COWHERD_RUN_DIR,\n"
  "else " RUNSTATEDIR "/cowherd.  See cowctl(8).\n";

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

/* create's --base and --cow (as "--base PATH" or "--base=PATH"). */
static void
cowctl_absolute_paths (char **args, int n)
{
  static const char *const opts[] = { "--base", "--cow" };
  if (n == 0 || strcmp (args[0], "create") != 0)
    return;
  for (int i = 1; i < n; i++)
    for (size_t k = 0; k < 2; k++)
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
          args[i] = abs;        /* lives until exit */
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
  const char *run_dir = getenv ("COWHERD_RUN_DIR");
  unsigned flags = 0;
  int timeout = 120;
  char **args = calloc ((size_t) argc + 1, sizeof *args);
  int n = 0;
  if (!args)
    return 1;
  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--json") == 0)
        flags |= CTL_F_JSON;
      else if (n == 0 && strcmp (argv[i], "--run-dir") == 0 && i + 1 < argc)
        run_dir = argv[++i];
      else if (n == 0 && strncmp (argv[i], "--run-dir=", 10) == 0)
        run_dir = argv[i] + 10;
      else if (n == 0 && strcmp (argv[i], "--timeout") == 0 && i + 1 < argc)
        timeout = atoi (argv[++i]);
      else if (n == 0 && (strcmp (argv[i], "--help") == 0
                          || strcmp (argv[i], "-h") == 0
                          || strcmp (argv[i], "help") == 0))
        {
          fputs (usage_text, stdout);
          free (args);
          return 0;
        }
      else if (n == 0 && strcmp (argv[i], "--version") == 0)
        {
          printf ("cowctl %s\n", PACKAGE_VERSION);
          free (args);
          return 0;
        }
      else if (n == 0 && argv[i][0] == '-')
        {
          fprintf (stderr, "cowctl: unknown option '%s'\n%s", argv[i],
                   usage_text);
          free (args);
          return CTL_EXIT_USAGE;
        }
      else
        args[n++] = argv[i];
    }
  if (n == 0)
    {
      fputs (usage_text, stderr);
      free (args);
      return CTL_EXIT_USAGE;
    }
  if (!run_dir || !*run_dir)
    run_dir = RUNSTATEDIR "/cowherd";
  char abs[4096];
  if (run_dir[0] != '/' && getcwd (abs, sizeof abs))
    {
      size_t l = strlen (abs);
      snprintf (abs + l, sizeof abs - l, "/%s", run_dir);
      run_dir = abs;
    }
  cowctl_absolute_paths (args, n);
  const char *wait_for = hydrate_wait_arg (&n, args);
  char *out = NULL;
  int r = ctl_call (run_dir, flags, n, args, &out, timeout * 1000);
  free (args);
  if (r < 0)
    {
      fprintf (stderr, "cowctl: cannot reach cowd at %s (is it running?): "
               "%s\n", run_dir, strerror (-r));
      return CTL_EXIT_ERROR;
    }
  if (out && *out)
    {
      FILE *f = r == 0 ? stdout : stderr;
      bool sentence = r != 0 && out[0] != '{' && out[0] != '[';
      fprintf (f, "%s%s%s", sentence ? "cowctl: " : "", out,
               out[strlen (out) - 1] == '\n' ? "" : "\n");
    }
  free (out);
  if (r == 0 && wait_for)
    r = wait_hydrated (run_dir, wait_for);
  return r;
}
