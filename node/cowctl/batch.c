/* SPDX-License-Identifier: GPL-2.0-or-later */
/* batch.c: `cowctl create --from FILE|-`: many definitions, a few hundred
 * per request.
 *
 * FILE holds one volume per line, the arguments create takes (NAME
 * --base BASE --cow COW [options]), words separated by blanks; a word
 * starting with '#' starts a comment to the end of the line; blank lines
 * are skipped.  cowctl reads the file as it goes, makes relative paths
 * absolute as for create, and sends the definitions in order as requests of at
 * most BATCH_DEFS definitions and BATCH_BYTES bytes, each definition led by
 * "--line=N" (ctl-cmds.c, create --from-batch).  cowd creates them in order and
 * stops at the first that fails: the lines before it stay created, it
 * and the lines after it are not created; cowctl sends no further batch.
 *
 * The answer: a summary line (with --json, an object with a result per
 * volume created), and where the time went in cowd (checks, formatting
 * the CoW devices, storing the definitions, telling the cluster).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ctl.h"
#include "cli.h"

#define BATCH_DEFS 200
#define BATCH_BYTES (256 * 1024)

struct batch
{
  const struct cli *c;
  struct ctl_conn *conn; /* one for every request of the file */
  const char *file;
  char **words; /* every word of the request under way */
  int nwords, cap;
  size_t bytes;
  int defs;
  unsigned long created;
  uint64_t ns[4];     /* check, format, store, define */
  struct strbuf json; /* the per-volume results */
  unsigned err_line;
  char err_code[CTL_CODE_MAX + 1];
  char *err_msg;
};

static int
batch_push (struct batch *b, char *w)
{
  if (b->nwords + 2 > b->cap)
    {
      int cap = b->cap ? b->cap * 2 : 1024;
      char **n = realloc (b->words, (size_t) cap * sizeof *n);
      if (!n)
        return -1;
      b->words = n;
      b->cap = cap;
    }
  b->words[b->nwords++] = w;
  b->bytes += strlen (w) + 1;
  return 0;
}

/* One reply line from cowd. */
static void
batch_line (struct batch *b, char *line)
{
  unsigned l, cs;
  char name[256], commit[16];
  uint64_t t[4];
  int off = 0;
  if (sscanf (line, "created %u %255s %u %15s", &l, name, &cs, commit) == 4)
    {
      sb_printf (&b->json, "%s{\"line\":%u,\"name\":", b->created ? "," : "",
                 l);
      sb_json_str (&b->json, name);
      sb_printf (&b->json, ",\"chunk_size\":%u,\"commit\":\"%s\"}", cs, commit);
      b->created++;
    }
  else if (sscanf (line, "timing %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
                   &t[0], &t[1], &t[2], &t[3])
           == 4)
    for (int i = 0; i < 4; i++)
      b->ns[i] += t[i];
  else if (sscanf (line, "error %u %64s %n", &l, b->err_code, &off) == 2
           && off > 0)
    {
      b->err_line = l;
      free (b->err_msg);
      b->err_msg = strdup (line + off);
    }
}

/* Send the definitions gathered so far: 0, or an exit status. */
static int
batch_flush (struct batch *b)
{
  if (b->defs == 0)
    return 0;
  struct ctl_answer a = { 0 };
  b->words[b->nwords] = NULL;
  int r = 0;
  if (!b->conn)
    b->conn = ctl_connect (b->c->run_dir, CTL_MAX_MSG, &r);
  if (b->conn)
    r = ctl_call_on (b->conn, 0, b->nwords, b->words, &a, b->c->timeout * 1000);
  for (int i = 2; i < b->nwords; i++)
    free (b->words[i]);
  b->nwords = 2;
  b->bytes = 0;
  b->defs = 0;
  if (r < 0)
    return cli_unreachable (b->c, r, &a);
  if (a.status != 0)
    {
      int st = cli_errorf (b->c, COW_E_INTERNAL, "%s", a.text);
      free (a.text);
      return st;
    }
  for (char *save = NULL, *l = strtok_r (a.text, "\n", &save); l;
       l = strtok_r (NULL, "\n", &save))
    batch_line (b, l);
  free (a.text);
  return b->err_msg ? CTL_EXIT_ERROR : 0;
}

/* Split one line of the file into words (comments dropped) and add it
 * as a definition: 0, or an exit status. */
static int
batch_add_line (struct batch *b, char *line, unsigned lineno)
{
  char *w[256], *save = NULL;
  int n = 1;
  w[0] = (char *) "create";
  for (char *t = strtok_r (line, " \t\r\n", &save); t && t[0] != '#';
       t = strtok_r (NULL, " \t\r\n", &save))
    {
      if (n == 255)
        return cli_errorf (b->c, COW_E_USAGE, "%s line %u: too many words",
                           b->file, lineno);
      w[n++] = t;
    }
  if (n == 1)
    return 0;
  char *made[256] = { NULL }, *tag;
  int r = 0;
  cowctl_absolute_paths (w, n, made);
  if (asprintf (&tag, "--line=%u", lineno) < 0 || batch_push (b, tag) < 0)
    r = -1;
  for (int i = 1; i < n && r == 0; i++)
    if (!(w[i] = strdup (w[i])) || batch_push (b, w[i]) < 0)
      r = -1;
  for (char **m = made; *m; m++)
    free (*m);
  if (r < 0)
    return cli_error (b->c, COW_E_INTERNAL, "out of memory");
  if (++b->defs >= BATCH_DEFS || b->bytes >= BATCH_BYTES)
    return batch_flush (b);
  return 0;
}

static void
batch_times (const struct batch *b, struct strbuf *sb)
{
  static const char *const what[] = { "check", "format", "store", "define" };
  for (int i = 0; i < 4; i++)
    sb_printf (sb, "%s\"%s\":%.3f", i ? "," : "", what[i],
               (double) b->ns[i] / 1e9);
}

/* The summary, text or JSON; the exit status. */
static int
batch_report (struct batch *b, double secs)
{
  double rate = secs > 0 ? (double) b->created / secs : 0;
  struct strbuf sb = STRBUF_INIT;
  if (b->c->json)
    {
      sb_printf (&sb,
                 "{\"created\":%lu,\"seconds\":%.3f,\"per_second\":%.1f,"
                 "\"cowd_seconds\":{",
                 b->created, secs, rate);
      batch_times (b, &sb);
      sb_printf (&sb, "},\"volumes\":[%s]", sb_str (&b->json));
      if (b->err_msg)
        {
          sb_printf (&sb,
                     ",\"error\":{\"code\":\"%s\",\"line\":%u,"
                     "\"message\":",
                     b->err_code, b->err_line);
          sb_json_str (&sb, b->err_msg);
          sb_puts (&sb, "}");
        }
      printf ("%s}\n", sb_str (&sb));
    }
  else
    {
      printf ("created %lu volumes from %s in %.3f s (%.1f per second); in "
              "cowd: check %.3f s, format %.3f s, store %.3f s, cluster "
              "%.3f s\n",
              b->created, b->file, secs, rate, b->ns[0] / 1e9, b->ns[1] / 1e9,
              b->ns[2] / 1e9, b->ns[3] / 1e9);
      if (b->err_msg)
        fprintf (stderr,
                 "cowctl: %s line %u: %s (the %lu volumes before it "
                 "are created; it and the lines after it are not)\n",
                 b->file, b->err_line, b->err_msg, b->created);
    }
  sb_free (&sb);
  return b->err_msg ? CTL_EXIT_ERROR : 0;
}

static FILE *
batch_open (const struct cli *c, const char *file)
{
  FILE *f = strcmp (file, "-") == 0 ? stdin : fopen (file, "r");
  if (!f)
    cli_errorf (c, COW_E_USAGE, "cannot read %s: %s", file, strerror (errno));
  return f;
}

/* Every line of f into b, in batches: 0, or an exit status. */
static int
batch_read (struct batch *b, FILE *f)
{
  char *line = NULL;
  size_t cap = 0;
  unsigned lineno = 0;
  int r = 0;
  while (r == 0 && getline (&line, &cap, f) >= 0)
    r = batch_add_line (b, line, ++lineno);
  if (r == 0 && ferror (f))
    r = cli_errorf (b->c, COW_E_IO, "cannot read %s: %s", b->file,
                    strerror (errno));
  free (line);
  return r ? r : batch_flush (b);
}

int
batch_create (const struct cli *c)
{
  if (c->argc != 3)
    return cli_error (c, COW_E_USAGE, "usage: cowctl create --from FILE|-");
  struct batch b = { .c = c, .file = c->argv[2], .json = STRBUF_INIT };
  FILE *f = batch_open (c, b.file);
  if (!f)
    return CTL_EXIT_USAGE;
  uint64_t t0 = clock_now_ns ();
  int r = batch_push (&b, (char *) "create") < 0
                  || batch_push (&b, (char *) "--from-batch") < 0
              ? cli_error (c, COW_E_INTERNAL, "out of memory")
              : batch_read (&b, f);
  if (f != stdin)
    fclose (f);
  if (r == 0 || b.err_msg)
    r = batch_report (&b, (double) (clock_now_ns () - t0) / 1e9);
  for (int i = 2; i < b.nwords; i++)
    free (b.words[i]);
  free (b.words);
  free (b.err_msg);
  sb_free (&b.json);
  ctl_disconnect (b.conn);
  return r;
}
