/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cli.h: what cowctl's files share: the parsed command line, the error
 * contract (cowctl.c), create --from (batch.c) and top (top.c). */
#ifndef COWCTL_CLI_H
#define COWCTL_CLI_H

#include <stdbool.h>

struct cli
{
  const char *run_dir;
  unsigned flags;
  int timeout; /* seconds */
  int argc;    /* the command and its arguments */
  char **argv;
  bool json;
};

/* Report an error as the contract says (cowctl(8) ERRORS): a sentence on
 * stderr, or the JSON error object on stdout; returns the exit status. */
int cli_error (const struct cli *c, int code, const char *msg);
int cli_errorf (const struct cli *c, int code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
/* cowd's answer, printed or said as an error: the exit status. */
int cli_answer (const struct cli *c, const struct ctl_answer *a);
/* A failed ctl_call, said as the contract says. */
int cli_unreachable (const struct cli *c, int r, const struct ctl_answer *a);
/* Make create's relative --base and --cow paths in args absolute; the
 * strings made go in made[] (NULL-terminated, room for n) to be freed. */
void cowctl_absolute_paths (char **args, int n, char **made);

/* cowctl create --from FILE|- (c->argv: "create" "--from" FILE). */
int batch_create (const struct cli *c);
/* cowctl top [--once] [-n N] [--interval SEC]. */
int top_run (const struct cli *c);
/* cowctl export NAME ...: follows the export to its end; -1 for the
 * plain call (--cancel, --no-wait, which it takes out of c->argv). */
int export_run (struct cli *c);

#endif
