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
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cowlog.h"

#include "cowd.h"
#include "ctl.h"
#include "nbd-server.h"
#include "clock.h"
#include "loop.h"

#define CREATE_BATCH "--from-batch"

/* Answer with a sentence: success when code is 0, else an error with its
 * code (COW_E_*, or a negative errno or code: errcode.h). */
void
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
 * on one line (a line break and the indent after it become one space). */
static void
usage_line (struct strbuf *sb, const char *cmd)
{
  const struct ctl_command *c = ctl_command_find (cmd);
  sb_puts (sb, "usage: cowctl ");
  for (const char *p = c ? c->usage : cmd; *p; p++)
    if (*p == '\n')
      {
        while (p[1] == ' ')
          p++;
        sb_puts (sb, " ");
      }
    else
      sb_printf (sb, "%c", *p);
}

void
reply_usage (struct ctl_req *req, const char *cmd)
{
  struct strbuf sb = STRBUF_INIT;
  usage_line (&sb, cmd);
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
    case 'k':
    case 'K':
      shift = 10;
      end++;
      break;
    case 'm':
    case 'M':
      shift = 20;
      end++;
      break;
    case 'g':
    case 'G':
      shift = 30;
      end++;
      break;
    case '\0':
      break;
    default:
      return -1;
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

struct vol_entry *
find_or_reply (struct ctl_req *req, const char *name)
{
  struct vol_entry *e = voldb_find (name);
  if (!e)
    reply_fmt (req, COW_E_NO_SUCH_VOLUME, "volume %s does not exist", name);
  else if (e->creating)
    {
      reply_fmt (req, COW_E_BUSY,
                 "volume %s is being created: its definition is not "
                 "durable yet",
                 name);
      return NULL;
    }
  return e;
}

/* A command on a volume whose attach opens it: refused, code busy. */
static void
reply_opening (struct ctl_req *req, const struct vol_entry *e)
{
  char err[COW_ERRLEN];
  int r = voldb_err_opening (e, err, sizeof err);
  reply_fmt (req, r, "%s", err);
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
  if (e->opening)
    return "attaching";
  if (!e->vol)
    return e->error ? "failed" : "detached";
  enum vol_state st = vol_get_state (e->vol);
  const char *h = vol_health (e->vol);
  if (st == VOL_STATE_ACTIVE
      && (strcmp (h, "reconnecting") == 0 || strcmp (h, "degraded") == 0))
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

static int create_errf (char *err, size_t errlen, int code, const char *fmt,
                        ...) __attribute__ ((format (printf, 4, 5)));

static int
create_errf (char *err, size_t errlen, int code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (err, errlen, fmt, ap);
  va_end (ap);
  return code;
}

/* cmd's usage line into err; COW_E_USAGE. */
static int
usage_err (char *err, size_t errlen, const char *cmd)
{
  struct strbuf sb = STRBUF_INIT;
  usage_line (&sb, cmd);
  create_errf (err, errlen, COW_E_USAGE, "%s", sb_str (&sb));
  sb_free (&sb);
  return COW_E_USAGE;
}

/* One create's arguments (argv[0] is "create") into p and *exclusive:
 * 0, or a code with its sentence in err. */
static int
create_parse (int argc, char **argv, struct vol_params *p, bool *exclusive,
              char *err, size_t errlen)
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
  uint64_t cs = DSCOW_CHUNK_DEFAULT;
  int c;
  *p = (struct vol_params){ .commit = DSCOW_COMMIT_SYNC };
  *exclusive = false;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":", opts, NULL)) != -1)
    switch (c)
      {
      case 'b':
        p->base_uri = optarg;
        break;
      case 'c':
        p->cow_uri = optarg;
        break;
      case 's':
        if (parse_size (optarg, &cs) < 0 || cs > UINT32_MAX
            || !dscow_chunk_size_valid ((uint32_t) cs))
          return create_errf (err, errlen, COW_E_USAGE,
                              "chunk size '%s' is "
                              "not a power of two between 4K and 1M",
                              optarg);
        break;
      case 'p':
        if (vol_commit_parse (optarg, &p->commit) < 0)
          return create_errf (err, errlen, COW_E_USAGE,
                              "commit policy '%s' "
                              "is not one of sync, flush, none",
                              optarg);
        break;
      case 'f':
        p->force = true;
        break;
      case 'x':
        *exclusive = true;
        break;
      case 'B':
        p->buffered = true;
        break;
      case ':':
        return create_errf (err, errlen, COW_E_USAGE,
                            "create: option '%s' "
                            "needs a value",
                            argv[optind - 1]);
      default:
        return create_errf (err, errlen, COW_E_USAGE,
                            "create: unknown "
                            "option '%s'",
                            cmd_bad_option (argc, argv));
      }
  if (optind != argc - 1 || !p->base_uri || !p->cow_uri)
    return usage_err (err, errlen, "create");
  p->name = argv[optind];
  p->chunk_size = (uint32_t) cs;
  return 0;
}

/* Where create's time goes, summed over the volumes created since the
 * last create_times_reset (cowctl create --from reports it). */
static struct create_times
{
  uint64_t check_ns, format_ns, store_ns, define_ns;
} create_t;

static uint64_t
create_lap (uint64_t *acc, uint64_t since)
{
  uint64_t now = clock_now_ns ();
  *acc += now - since;
  return now;
}

/* A slice of create --from (create_batch_step), or the one volume of a
 * create: on the loop, each definition is checked and added to the table
 * as "creating", which reserves its name and its CoW device (by path,
 * device and inode); on a thread, the slice's CoW devices are formatted
 * (a LUN's session opened there too: 50-64 ms a create that the loop
 * waited for) and made durable: regular files are formatted without
 * flushes, then one syncfs per filesystem of them (one fsync for one);
 * back on the loop, the commit (without an fsync), the fdatasync of the
 * store's log on a thread, then the cluster is told and their lines are
 * answered (create_slice_durable).  Nothing names a volume of the slice
 * before its device is durable: a crash before the commit leaves
 * formatted devices that no definition names (create --force takes
 * them).  Two flushes per CoW file and a commit per volume were most of a
 * batch's time (issue 17); the formats on the loop kept the creating
 * host's NBD requests waiting. */
#define CREATE_SLICE_MAX 256

struct create_slice
{
  struct vol_entry *vols[CREATE_SLICE_MAX];
  struct vol_params ps[CREATE_SLICE_MAX]; /* their definitions, checked */
  unsigned lines[CREATE_SLICE_MAX];       /* in the operator's file */
  unsigned n;
  struct backend_opts bo;    /* the formats' (blocking_only) */
  int fds[CREATE_SLICE_MAX]; /* one open CoW file per filesystem */
  dev_t devs[CREATE_SLICE_MAX];
  unsigned nfs;
  /* The thread's: the volumes formatted (the first `formatted'), how the
   * next failed, and the loop's answers to its questions. */
  unsigned formatted, cur;
  unsigned defined; /* told to the cluster (create_slice_define_step) */
  int code;
  char err[COW_ERRLEN];
  char user[DSCOW_NAME_MAX + 1];
  int claim_err; /* 0, or ENOMEM: a claim's identity was not indexed */
  int sync_err;  /* 0, or the errno of a syncfs or fsync */
  uint64_t t;    /* when the thread's work was handed over */
};

/* p's CoW device is a regular file: format it without flushes, and keep a
 * file of its filesystem open for the syncfs.  0, or a code with err. */
static int
create_slice_file (struct create_slice *sl, struct vol_params *p, char *err,
                   size_t errlen)
{
  struct stat st;
  if (stat (p->cow_uri, &st) < 0 || !S_ISREG (st.st_mode))
    return 0; /* a device, a LUN: formatted with its flushes */
  for (unsigned i = 0; i < sl->nfs; i++)
    if (sl->devs[i] == st.st_dev)
      return p->no_flush = true, 0;
  int fd = open (p->cow_uri, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return create_errf (err, errlen, COW_E_BAD_DEVICE,
                        "volume %s: cannot open CoW device %s: %s", p->name,
                        p->cow_uri, strerror (errno));
  sl->fds[sl->nfs] = fd;
  sl->devs[sl->nfs++] = st.st_dev;
  p->no_flush = true;
  return 0;
}

/* The format's question about the table, asked from the thread
 * (cowd_on_loop) with the volume at sl->cur. */
struct create_question
{
  struct create_slice *sl;
  const char *name; /* is this volume defined? */
  bool answer;
};

/* Is the opened CoW device another volume's (by its key, and a LUN's VPD
 * identity: two portals or names of one LUN)?  If not, it is claimed for
 * the volume at once: a create of that LUN under another name, formatted
 * meanwhile, finds it taken. */
static const char *
create_cow_user (void *ud, const struct backend *cow)
{
  struct create_slice *sl = ud;
  return voldb_cow_user_on_loop (sl->vols[sl->cur], cow, true, sl->user,
                                 &sl->claim_err);
}

static void
create_defined_on_loop (void *data)
{
  struct create_question *q = data;
  q->answer = voldb_defined (NULL, q->name);
}

static bool
create_defined (void *ud, const char *name)
{
  struct create_question q = { .sl = ud, .name = name };
  cowd_on_loop (create_defined_on_loop, &q);
  return q.answer;
}

/* The one function that creates a volume, into a slice (of create --from,
 * or of one for create): check the definition and add it to the table as
 * "creating"; the format, the flushes, the commit and the cluster are the
 * slice's.  0, or a code with its sentence in err. */
static int
create_volume (const struct vol_params *pp, bool exclusive, unsigned line,
               struct create_slice *sl, char *err, size_t errlen)
{
  struct vol_params p = *pp;
  uint64_t t = clock_now_ns ();
  if (!dscow_name_valid (p.name))
    return create_errf (err, errlen, COW_E_USAGE,
                        "volume name '%s' is not "
                        "valid: %s",
                        p.name, dscow_strerror (DSCOW_ENAME));
  if (voldb_find (p.name))
    return create_errf (err, errlen, COW_E_EXISTS,
                        "volume %s already "
                        "exists",
                        p.name);
  if (voldb_check_path (p.name, "base", p.base_uri, err, errlen) < 0
      || voldb_check_path (p.name, "CoW", p.cow_uri, err, errlen) < 0)
    return COW_E_BAD_DEVICE;
  /* Before the format: --force never formats another volume's device. */
  const char *user = voldb_cow_user_uri (p.name, p.cow_uri);
  if (user)
    return vol_err_cow_taken (err, errlen, p.name, p.cow_uri, user);
  int r;
  if ((r = create_slice_file (sl, &p, err, errlen)) != 0)
    return r;
  struct vol_entry *e = voldb_add (p.name, p.base_uri, p.cow_uri, p.chunk_size,
                                   p.commit, false);
  if (!e)
    return create_errf (err, errlen, COW_E_INTERNAL,
                        "volume %s: out of "
                        "memory",
                        p.name);
  e->exclusive = exclusive;
  e->buffered = p.buffered;
  e->creating = true; /* formatted and stored by the slice */
  unsigned i = sl->n++;
  p.cow_user = create_cow_user;
  p.defined = create_defined;
  p.cow_user_ud = sl;
  p.quiet = true;
  sl->ps[i] = p;
  sl->lines[i] = line;
  sl->vols[i] = e;
  create_lap (&create_t.check_ns, t);
  return 0;
}

static void cmd_create_batch (struct ctl_req *req, int argc, char **argv);

static void create_single (struct ctl_req *req, int argc, char **argv,
                           bool json);

static void
cmd_create (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc >= 2 && strcmp (argv[1], CREATE_BATCH) == 0)
    return cmd_create_batch (req, argc, argv);
  create_single (req, argc, argv, json);
}

/* --- create --from: several definitions in one request ---
 *
 * cowctl sends "create " CREATE_BATCH, then for each definition a word
 * "--line=N" (its line in the operator's file) followed by the words of
 * that line, the same arguments as create.  cowd creates them in order,
 * in slices of up to CREATE_SLICE_MAX (checked on the loop in turns of at
 * most CREATE_TURN_NS of its CPU, formatted on a thread, made durable
 * together: struct create_slice) so IO keeps flowing, and stops at the
 * first that fails: those before it stay created, it and those after it
 * are not created.  The answer, in lines cowctl formats (text
 * or JSON):
 *   created LINE NAME CHUNK-SIZE COMMIT     one per volume created
 *   timing CHECK-NS FORMAT-NS STORE-NS DEFINE-NS
 *   error LINE CODE SENTENCE                 at most one, last
 */
/* A turn's CPU time, not the wall clock: on a shared machine a slice
 * measured by the clock ended at the first preemption, and with a syncfs
 * and a commit per slice of one or two definitions a cluster's batch
 * made 324 a second (bench/scale, 2,000 volumes; 485-534 with CPU time).
 * Now a turn only checks (35 us a definition); the formats are the
 * slice's thread's. */
#define CREATE_TURN_NS 1000000ull

/* A turn of create's work on the loop that began at t0 (the loop's CPU
 * time) is over: CREATE_TURN_NS of CPU, or I/O waits. */
static bool
create_turn_over (uint64_t t0)
{
  return clock_thread_cpu_ns () - t0 >= CREATE_TURN_NS || cowd_io_waiting ();
}

struct create_batch
{
  struct ctl_req *req;
  int argc, pos; /* the next definition's "--line=" word */
  char **argv;
  struct strbuf out;
  qb_loop_timer_handle timer;
  unsigned slices, created; /* for the log line at the end */
  unsigned turns;           /* of the loop the checks ran in */
  unsigned define_turns;    /* more turns to tell the cluster */
  struct create_slice *sl;  /* the slice under way */
  struct strbuf errline;    /* the error that ends the batch, or "" */
  bool stop;                /* the slice under way is the last */
  /* A plain create: one volume in one slice, and create's answer. */
  bool single, json;
  struct vol_params p;
  bool exclusive;
  int code; /* how it failed, with its sentence in err */
  char err[COW_ERRLEN];
};

/* The definition at b->pos: its words (argv[0] = "create") in words. */
static int
create_batch_words (struct create_batch *b, char **words, unsigned *line)
{
  int n = 1;
  *line = (unsigned) strtoul (b->argv[b->pos] + 7, NULL, 10);
  words[0] = (char *) "create";
  for (b->pos++;
       b->pos < b->argc && strncmp (b->argv[b->pos], "--line=", 7) != 0;
       b->pos++)
    words[n++] = b->argv[b->pos];
  words[n] = NULL;
  return n;
}

/* Check the definition at b->pos into the slice: 0, or -1 with its error
 * line in *errline. */
static int
create_batch_one (struct create_batch *b, char **words, struct create_slice *sl,
                  struct strbuf *errline)
{
  struct vol_params p;
  bool exclusive;
  unsigned line;
  char err[COW_ERRLEN];
  int n = create_batch_words (b, words, &line);
  int r = create_parse (n, words, &p, &exclusive, err, sizeof err);
  if (r == 0)
    r = create_volume (&p, exclusive, line, sl, err, sizeof err);
  if (r != 0)
    {
      sb_printf (errline, "error %u %s %s\n", line,
                 cow_err_name (cow_err_code (r)), err);
      return -1;
    }
  return 0;
}

/* A slice with the formats' options: the backends they open stay off
 * the loop (backend_opts.blocking_only). */
static struct create_slice *
create_slice_new (void)
{
  struct create_slice *sl = calloc (1, sizeof *sl);
  if (!sl)
    return NULL;
  voldb_backend_opts (&sl->bo);
  if (cowd.own->format_opts)
    cowd.own->format_opts (&sl->bo);
  sl->bo.blocking_only = true;
  return sl;
}

/* The slice's end, in steps so that no disk is waited for on the loop
 * (offload.c): its CoW devices formatted and made durable (on a thread),
 * then its definitions committed (on the loop, without an fsync), then
 * the store's log made durable (fdatasync, on a thread); then the cluster
 * is told and its lines join the answer.  Until then its volumes are
 * "creating": commands refuse them (find_or_reply), the cluster does not
 * know them, and a crash leaves formatted devices that no durable
 * definition names (create --force takes them).  A format that fails
 * ends the batch at its line, as a check does; a step after the formats
 * that fails ends it with an error line, and none of the slice is
 * created. */
static void create_batch_step (void *opaque);
static void create_batch_finish (struct create_batch *b);

static void
create_slice_fail (struct create_batch *b, const char *what, int err)
{
  struct create_slice *sl = b->sl;
  if (b->single && sl->n)
    b->code = create_errf (b->err, sizeof b->err, COW_E_IO,
                           "volume %s: %s failed: %s; it was not created",
                           sl->vols[0]->name, what, strerror (err));
  for (unsigned i = 0; i < sl->n; i++)
    voldb_remove (sl->vols[i]);
  if (sl->n && !b->single)
    sb_printf (&b->out,
               "error %u io volumes of lines %u and on: %s failed: %s; "
               "none of them was created\n",
               sl->lines[0], sl->lines[0], what, strerror (err));
  sl->n = 0;
  sb_reset (&b->errline);
  b->stop = true;
}

/* The slice is over, created or not: the next, or the answer. */
static void
create_slice_next (struct create_batch *b)
{
  free (b->sl);
  b->sl = NULL;
  if (b->stop || b->pos >= b->argc)
    return create_batch_finish (b);
  /* A timer due now (not a job, which qb_loop may run only after a poll
   * with a timeout): the next slice after the events waiting. */
  qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW, 0, b, create_batch_step,
                     &b->timer);
}

/* The slice's volumes are durable: each is logged and answered, in turns
 * of at most CREATE_DEFINE_TURN volumes and CREATE_TURN_NS of the loop's
 * CPU that end early when I/O waits, and a turn's volumes are told to the
 * cluster together (one DEFINE_MANY).  A slice of 256 in one stretch (21
 * ms of the loop's wall clock on a busy host) kept the creating host's
 * NBD p99 at 3-4x a qemu-nbd beside it (bench/scale 10,000). */
#define CREATE_DEFINE_TURN 32
static void
create_slice_define_step (void *opaque)
{
  struct create_batch *b = opaque;
  struct create_slice *sl = b->sl;
  uint64_t t0 = clock_thread_cpu_ns (), t = clock_now_ns ();
  unsigned first = sl->defined;
  while (sl->defined < sl->n)
    {
      const struct vol_params *p = &sl->ps[sl->defined];
      struct vol_entry *e = sl->vols[sl->defined++];
      qb_log (LOG_INFO, "volume: %s: formatted %s over base %s, chunk %u",
              p->name, p->cow_uri, p->base_uri, p->chunk_size);
      e->creating = false;
      if (!b->single)
        sb_printf (&b->out, "created %u %s %u %s\n", sl->lines[sl->defined - 1],
                   p->name, p->chunk_size, vol_commit_name (p->commit));
      if (sl->defined < sl->n
          && (sl->defined - first == CREATE_DEFINE_TURN
              || create_turn_over (t0)))
        {
          cowd.own->defined (&sl->vols[first], sl->defined - first);
          create_lap (&create_t.define_ns, t);
          b->define_turns++;
          qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW, 0, b,
                             create_slice_define_step, &b->timer);
          return;
        }
    }
  if (sl->defined > first)
    cowd.own->defined (&sl->vols[first], sl->defined - first);
  create_lap (&create_t.define_ns, t);
  b->created += sl->n;
  create_slice_next (b);
}

static void
create_slice_durable (void *opaque, int err)
{
  struct create_batch *b = opaque;
  struct create_slice *sl = b->sl;
  create_lap (&create_t.store_ns, sl->t);
  if (err)
    {
      for (unsigned i = 0; i < sl->n; i++)
        voldb_unstore (sl->vols[i]);
      create_slice_fail (b, "making the definitions durable (fdatasync)", err);
      return create_slice_next (b);
    }
  create_slice_define_step (b);
}

/* On a thread: format the slice's CoW devices in order, up to the first
 * that fails, and make them durable: for one volume's file an fsync of
 * that file, for several a syncfs of each of their filesystems, cheaper
 * than one fsync each (a LUN's format flushes itself). */
static void
create_slice_work (void *opaque)
{
  struct create_slice *sl = ((struct create_batch *) opaque)->sl;
  for (sl->cur = 0; sl->cur < sl->n; sl->cur++)
    {
      int r = vol_format (&sl->ps[sl->cur], &sl->bo, sl->err, sizeof sl->err);
      if (r < 0)
        {
          sl->code = r;
          break;
        }
    }
  sl->formatted = sl->cur;
  for (unsigned i = 0; i < sl->nfs; i++)
    {
      if (sl->formatted
          && (sl->formatted == 1 ? fsync (sl->fds[i]) : syncfs (sl->fds[i])) < 0
          && !sl->sync_err)
        sl->sync_err = errno;
      close (sl->fds[i]);
    }
}

/* Run the slice's formats and flushes on a thread, then
 * create_slice_formatted on the loop (offload.c). */
static void create_slice_formatted (void *opaque);

static void
create_slice_offload (struct create_batch *b)
{
  b->sl->t = clock_now_ns ();
  cowd_offload (create_slice_work, create_slice_formatted, b);
}

/* A format failed: the volumes from it on are not created, and it ends
 * the batch with its error (before any line the checks failed at). */
static void
create_slice_format_failed (struct create_batch *b)
{
  struct create_slice *sl = b->sl;
  unsigned k = sl->formatted;
  for (unsigned i = k; i < sl->n; i++)
    voldb_remove (sl->vols[i]);
  sl->n = k;
  b->stop = true;
  if (b->single)
    {
      b->code = sl->code;
      snprintf (b->err, sizeof b->err, "%s", sl->err);
      return;
    }
  sb_reset (&b->errline);
  sb_printf (&b->errline, "error %u %s %s\n", sl->lines[k],
             cow_err_name (cow_err_code (sl->code)), sl->err);
}

static void
create_slice_formatted (void *opaque)
{
  struct create_batch *b = opaque;
  struct create_slice *sl = b->sl;
  create_lap (&create_t.format_ns, sl->t);
  if (sl->formatted < sl->n)
    create_slice_format_failed (b);
  if (sl->claim_err)
    create_slice_fail (b, "recording the CoW devices' identities",
                       sl->claim_err);
  else if (sl->sync_err)
    create_slice_fail (b, "making the CoW files durable (fsync or syncfs)",
                       sl->sync_err);
  else if (sl->n == 0)
    ; /* the slice's first format failed, or the batch's first line */
  else if (voldb_store_deferred (sl->vols, sl->n) < 0)
    create_slice_fail (b, "saving the definitions", EIO);
  else
    {
      sl->t = clock_now_ns ();
      return voldb_sync_async (create_slice_durable, b);
    }
  create_slice_next (b);
}

/* A plain create's answer. */
static void
create_single_finish (struct create_batch *b)
{
  const struct vol_params *p = &b->p;
  if (b->code)
    reply_fmt (b->req, b->code, "%s", b->err);
  else if (b->json)
    {
      struct strbuf sb = STRBUF_INIT;
      sb_puts (&sb, "{\"name\":");
      sb_json_str (&sb, p->name);
      sb_printf (&sb, ",\"chunk_size\":%u,\"commit\":\"%s\"}\n", p->chunk_size,
                 vol_commit_name (p->commit));
      ctl_reply (b->req, 0, sb_str (&sb));
      sb_free (&sb);
    }
  else
    reply_fmt (b->req, 0, "created volume %s (chunk size %u, commit %s)\n",
               p->name, p->chunk_size, vol_commit_name (p->commit));
  sb_free (&b->errline);
  sb_free (&b->out);
  free (b);
}

static void
create_batch_finish (struct create_batch *b)
{
  if (b->single)
    return create_single_finish (b);
  sb_puts (&b->out, sb_str (&b->errline));
  sb_free (&b->errline);
  qb_log (LOG_INFO,
          "create --from: %u volumes created in %u slices over %u turns of "
          "the loop (%u more to define them); check %.3f s, format %.3f s, "
          "store %.3f s, cluster %.3f s",
          b->created, b->slices, b->turns, b->define_turns,
          (double) create_t.check_ns / 1e9, (double) create_t.format_ns / 1e9,
          (double) create_t.store_ns / 1e9, (double) create_t.define_ns / 1e9);
  sb_printf (&b->out,
             "timing %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
             create_t.check_ns, create_t.format_ns, create_t.store_ns,
             create_t.define_ns);
  ctl_reply (b->req, 0, sb_str (&b->out));
  sb_free (&b->out);
  free (b);
}

/* A slice's checks run in turns of the loop: one ends, after a volume,
 * when I/O waits (cowd_io_waiting) or at CREATE_TURN_NS of CPU, and the
 * next goes on with the same slice; the slice goes to its thread when
 * full, at the end of the batch, or at a line that fails. */
static void
create_batch_step (void *opaque)
{
  struct create_batch *b = opaque;
  char **words = calloc ((size_t) b->argc + 1, sizeof *words);
  if (!b->sl)
    b->sl = create_slice_new ();
  struct create_slice *sl = b->sl;
  if (!words || !sl)
    {
      free (words);
      sb_puts (&b->errline, "error 0 internal out of memory\n");
      b->stop = true;
      if (!sl)
        return create_batch_finish (b);
      /* what it checked is formatted, made durable and answered */
      return create_slice_offload (b);
    }
  /* A step runs only with a definition to create (cmd_create_batch,
   * create_slice_next, or the turn before it, which was not full). */
  b->turns++;
  uint64_t t0 = clock_thread_cpu_ns ();
  bool full, turn_over;
  do
    {
      if (create_batch_one (b, words, sl, &b->errline) < 0)
        b->stop = true;
      full = b->stop || b->pos >= b->argc || sl->n >= CREATE_SLICE_MAX;
      turn_over = create_turn_over (t0);
    }
  while (!full && !turn_over);
  free (words);
  if (!full)
    {
      qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW, 0, b, create_batch_step,
                         &b->timer);
      return;
    }
  b->slices++;
  create_slice_offload (b);
}

/* create: a slice of one, so that it too formats and waits for the disk
 * off the loop (its CoW file's fsync, the store's log) and answers once
 * durable. */
static void
create_single (struct ctl_req *req, int argc, char **argv, bool json)
{
  struct create_batch *b = calloc (1, sizeof *b);
  struct create_slice *sl = create_slice_new ();
  if (!b || !sl)
    {
      free (b);
      free (sl);
      return reply_fmt (req, COW_E_INTERNAL, "out of memory");
    }
  *b = (struct create_batch){ .req = req,
                              .out = STRBUF_INIT,
                              .errline = STRBUF_INIT,
                              .single = true,
                              .json = json,
                              .stop = true,
                              .slices = 1,
                              .sl = sl };
  b->code
      = create_parse (argc, argv, &b->p, &b->exclusive, b->err, sizeof b->err);
  if (b->code == 0)
    b->code = create_volume (&b->p, b->exclusive, 0, sl, b->err, sizeof b->err);
  if (b->code != 0)
    {
      if (sl->nfs)
        close (sl->fds[0]); /* opened before a check failed */
      sl->nfs = 0, sl->n = 0;
      return create_slice_next (b);
    }
  create_slice_offload (b);
}

static void
cmd_create_batch (struct ctl_req *req, int argc, char **argv)
{
  struct create_batch *b = calloc (1, sizeof *b);
  if (!b)
    return reply_fmt (req, COW_E_INTERNAL, "out of memory");
  if (argc < 3 || strncmp (argv[2], "--line=", 7) != 0)
    {
      free (b);
      return reply_usage (req, "create");
    }
  *b = (struct create_batch){ .req = req,
                              .argc = argc,
                              .argv = argv,
                              .pos = 2,
                              .out = STRBUF_INIT,
                              .errline = STRBUF_INIT };
  create_t = (struct create_times){ 0 };
  create_batch_step (b);
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

/* The answer of a successful attach: the volume's URI; times is the
 * JSON of an --wait-owned attach's timing, or "". */
static void
attach_reply (struct ctl_req *req, struct vol_entry *e, const char *times)
{
  char *uri = entry_uri (e);
  if (ctl_req_flags (req) & CTL_F_JSON)
    reply_fmt (req, 0, "{\"name\":\"%s\",\"uri\":\"%s\"%s}\n", e->name,
               uri ? uri : "", times);
  else
    reply_fmt (req, 0, "%s\n", uri ? uri : "");
  free (uri);
}

/* attach answers once the devices are open (on a thread: an iSCSI login
 * to a target that answers nothing kept every volume of the host waiting
 * for ever) and, with --wait-owned, once this node serves the volume. */
struct attach_wait
{
  struct ctl_req *req;
  struct vol_entry *e;
  uint64_t t0, t_open; /* the command came; the devices were open */
  unsigned wait_s;     /* --wait-owned */
};

static void
attach_owned (void *opaque, int res, const char *err)
{
  struct attach_wait *w = opaque;
  char times[80];
  uint64_t now = cowd_now_ns ();
  snprintf (times, sizeof times, ",\"open_ms\":%.1f,\"own_ms\":%.1f",
            (double) (w->t_open - w->t0) / 1e6,
            (double) (now - w->t_open) / 1e6);
  if (res < 0)
    reply_fmt (w->req, res, "%s", err);
  else
    attach_reply (w->req, w->e, times);
  free (w);
}

static void
attach_opened (void *opaque, int r, const char *err)
{
  struct attach_wait *w = opaque;
  struct ctl_req *req = w->req;
  struct vol_entry *e = w->e;
  w->t_open = cowd_now_ns ();
  if (r < 0)
    {
      voldb_set_error (e, err);
      free (w);
      return reply_fmt (req, r, "%s", err);
    }
  if (!e->attached)
    {
      e->attached = true;
      voldb_live (e);
      voldb_store_lazy (e); /* no fsync on the way to serving */
    }
  if (w->wait_s && cowd.own->wait_owned)
    {
      if (cowd.own->wait_owned (e, w->wait_s, attach_owned, w) < 0)
        {
          free (w);
          return reply_fmt (req, COW_E_INTERNAL,
                            "volume %s: cannot wait "
                            "for ownership: out of memory",
                            e->name);
        }
      return;
    }
  free (w);
  attach_reply (req, e, "");
}

/* An attach that came while another opened the volume: the same outcome.
 * On a failure the first attach recorded the error, and the volume may be
 * gone (deleted in the cluster meanwhile): only the answer. */
static void
attach_joined (void *opaque, int r, const char *err)
{
  struct attach_wait *w = opaque;
  if (r >= 0)
    return attach_opened (w, r, err);
  reply_fmt (w->req, r, "%s", err);
  free (w);
}

static void
cmd_attach (struct ctl_req *req, int argc, char **argv, bool json)
{
  bool incoming = false, accept = false;
  unsigned wait_s = 0;
  char *end;
  for (int i = 2; i < argc; i++)
    if (strcmp (argv[i], "--incoming") == 0)
      incoming = true;
    else if (strcmp (argv[i], "--accept-base-change") == 0)
      accept = true;
    else if (strcmp (argv[i], "--wait-owned") == 0 && i + 1 < argc
             && (wait_s = (unsigned) strtoul (argv[i + 1], &end, 10)) >= 1
             && wait_s <= 3600 && *end == '\0' && argv[i + 1][0] != '-')
      i++;
    else
      argc = 0;
  if (argc < 2)
    return reply_usage (req, "attach");
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (e->closing)
    return reply_fmt (req, COW_E_BUSY,
                      "volume %s is being detached; try"
                      " again",
                      e->name);
  struct attach_wait *w = malloc (sizeof *w);
  if (!w)
    return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory", e->name);
  *w = (struct attach_wait){ req, e, cowd_now_ns (), 0, wait_s };
  if (e->opening) /* another attach's or a re-attach's: wait for it */
    {
      if (voldb_attach_join (e, attach_joined, w) == 0)
        return;
      free (w);
      return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                        e->name);
    }
  char err[COW_ERRLEN];
  e->accept_base_change = accept;
  int r = cowd.own->attach (e, incoming, attach_opened, w, err, sizeof err);
  e->accept_base_change = false;
  if (r <= 0)
    attach_opened (w, r, err);
  (void) json;
}

/* detach answers once the volume is closed (its superblock marked clean,
 * without blocking the loop) and "not attached" is durable in the store
 * (committed without an fsync, then voldb_sync_async on a thread): a
 * fsynced commit on the loop kept every other volume's requests waiting
 * for the disk (996.7 ms under a 1 s fdatasync). */
struct detach_wait
{
  struct ctl_req *req;
  unsigned pending; /* the close, the store's sync */
  int close_res;    /* 0 or -errno */
  int sync_err;     /* 0 or an errno */
  char *name;
};

static void
detach_step (struct detach_wait *w)
{
  if (--w->pending > 0)
    return;
  if (w->close_res < 0)
    reply_fmt (w->req, w->close_res,
               "volume detached, but marking it clean "
               "failed: %s",
               strerror (-w->close_res));
  else if (w->sync_err)
    reply_fmt (w->req, COW_E_IO,
               "volume %s detached, but saving that it is detached failed: "
               "%s; cowd may attach it again when it restarts",
               w->name, strerror (w->sync_err));
  else
    ctl_reply (w->req, 0, ctl_req_flags (w->req) & CTL_F_JSON ? "{}\n" : "");
  free (w->name);
  free (w);
}

static void
detach_closed (void *opaque, int res)
{
  struct detach_wait *w = opaque;
  w->close_res = res;
  detach_step (w);
}

static void
detach_synced (void *opaque, int err)
{
  struct detach_wait *w = opaque;
  w->sync_err = err;
  detach_step (w);
}

static void
cmd_detach (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (e->opening)
    return reply_opening (req, e);
  struct detach_wait *w = calloc (1, sizeof *w);
  if (!w || !(w->name = strdup (e->name)))
    {
      free (w);
      return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                        e->name);
    }
  w->req = req;
  w->pending = 1; /* this function's own, ended below */
  if (e->attached)
    {
      e->attached = false;
      voldb_live (e);
      w->pending++;
      if (voldb_store_deferred (&e, 1) < 0)
        detach_synced (w, EIO);
      else
        voldb_sync_async (detach_synced, w);
    }
  voldb_set_error (e, NULL);
  if (e->vol && !e->closing)
    {
      w->pending++;
      cowd.own->detach (e, detach_closed, w);
    }
  (void) json;
  detach_step (w);
}

/* delete answers once the removal is durable (voldb_sync_async). */
struct delete_wait
{
  struct ctl_req *req;
  char *name;
};

static void
delete_durable (struct delete_wait *w, int err)
{
  if (err)
    reply_fmt (w->req, COW_E_IO,
               "volume %s: the definition was removed, but making that "
               "durable in %s failed: %s",
               w->name, cowd.state_dir, strerror (err));
  else
    ctl_reply (w->req, 0, ctl_req_flags (w->req) & CTL_F_JSON ? "{}\n" : "");
  free (w->name);
}

static void
delete_durable_free (void *opaque, int err)
{
  delete_durable (opaque, err);
  free (opaque);
}

static void
cmd_delete (struct ctl_req *req, int argc, char **argv, bool json)
{
  if (argc != 2)
    return reply_usage (req, argv[0]);
  struct vol_entry *e = find_or_reply (req, argv[1]);
  if (!e)
    return;
  if (e->opening)
    return reply_opening (req, e);
  if (e->vol || e->closing)
    return reply_fmt (req, COW_E_ATTACHED,
                      "volume %s is attached; detach it"
                      " first",
                      e->name);
  char err[COW_ERRLEN];
  int code = cowd.own->undefine ? cowd.own->undefine (e, err, sizeof err) : 0;
  if (code)
    return reply_fmt (req, code, "%s", err);
  char *name = strdup (e->name);
  if (!name)
    return reply_fmt (req, COW_E_INTERNAL, "out of memory");
  if (voldb_unstore_deferred (e) < 0)
    {
      reply_fmt (req, COW_E_IO,
                 "volume %s: removing the definition from %s failed", name,
                 cowd.state_dir);
      return free (name);
    }
  voldb_remove (e);
  struct delete_wait *w = malloc (sizeof *w);
  if (!w)
    {
      delete_durable (&(struct delete_wait){ req, name }, ENOMEM);
      return;
    }
  *w = (struct delete_wait){ req, name };
  voldb_sync_async (delete_durable_free, w);
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
  sb_printf (sb,
             ",\"hydration\":{\"state\":\"%s\",\"percent\":%.1f,"
             "\"done\":%" PRIu64 ",\"total\":%" PRIu64 ",\"copied\":%" PRIu64
             ",\"rate_mbs\":%.1f,\"limit_mbs\":%" PRIu32
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
  sb_printf (sb,
             "hydration:   %s, %.1f%% (%" PRIu64 " of %" PRIu64
             " chunks, %" PRIu64 " copied here)",
             hydration_state (&h), 100.0 * (double) h.done / (double) h.total,
             h.done, h.total, h.copied);
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
  struct own_facts of;
  bool in_table = cowd.own->facts (e, &of);
  if (in_table)
    sb_printf (sb,
               ",\"cluster_state\":\"%s\",\"owner\":%u,"
               "\"cluster_epoch\":%" PRIu64 ",\"requester\":%u,"
               "\"bouncing\":%s",
               of.state, of.owner, of.epoch, of.requester,
               of.bouncing ? "true" : "false");
  if (in_table && full)
    sb_printf (sb, ",\"local\":%u", of.local);
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
      sb_printf (sb,
                 ",\"size\":%" PRIu64 ",\"chunk_size\":%u,\"chunks\":%" PRIu64
                 ",\"cow_chunks\":%" PRIu64 ",\"epoch\":%" PRIu64
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
    {
      hydration_json (sb, e->vol);
      chain_status_json (sb, e->vol);
      export_status_json (sb, e->vol);
    }
  if (full && e->vol)
    {
      struct vol_stats st;
      vol_get_stats (e->vol, &st);
      sb_printf (sb,
                 ",\"stats\":{\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
                 ",\"flushes\":%" PRIu64 ",\"trims\":%" PRIu64
                 ",\"write_zeroes\":%" PRIu64 ",\"bytes_read\":%" PRIu64
                 ",\"bytes_written\":%" PRIu64 ",\"read_base_bytes\":%" PRIu64
                 ",\"read_cow_bytes\":%" PRIu64 ",\"cow_faults\":%" PRIu64
                 ",\"full_chunk_writes\":%" PRIu64 ",\"commits\":%" PRIu64
                 ",\"committed_requests\":%" PRIu64 ",\"errors\":%" PRIu64
                 ",\"in_flight\":%" PRIu64 ",\"blocking_io_ms\":%.3f"
                 ",\"hydrated_chunks\":%" PRIu64 ",\"takeovers\":%" PRIu64
                 ",\"handoffs\":%" PRIu64
                 ",\"commit_p50_s\":%.6f,\"commit_p99_s\":%.6f"
                 ",\"commit_seconds_sum\":%.6f}",
                 st.reads, st.writes, st.flushes, st.trims, st.zeroes,
                 st.bytes_read, st.bytes_written, st.read_base_bytes,
                 st.read_cow_bytes, st.cow_faults, st.full_chunk_writes,
                 st.commits, st.commit_faults, st.errors, st.in_flight,
                 (double) st.blocking_io_ns / 1e6, st.hydrated_chunks,
                 st.takeovers, st.handoffs, vol_stats_quantile (&st, 0.5),
                 vol_stats_quantile (&st, 0.99),
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

/* --- list ---
 *
 * list [--owner NODE] [--state STATE] [--after NAME] [--limit N] [PATTERN]
 * One pass over the table (sorted by name, voldb.c), constant work per
 * volume: the filters are tested in order of cost, and paging goes by
 * name (--after NAME: the volumes whose names sort after NAME, whether
 * NAME still exists or not), so a page costs no lookup.  The pass is cut
 * in slices (list_job, below). */
struct list_filter
{
  const char *pattern, *state, *after;
  bool by_owner;
  uint32_t owner;
  unsigned long limit; /* 0: no limit */
};

static const char *const list_states[]
    = { "active",    "held",         "readonly", "fenced",
        "degraded",  "reconnecting", "detached", "failed",
        "attaching", "detaching",    NULL };

static int
list_parse_state (const char *s)
{
  for (int i = 0; list_states[i]; i++)
    if (strcmp (s, list_states[i]) == 0)
      return 0;
  return -1;
}

/* "active, held, ...": the states list --state takes, from the table. */
static const char *
list_states_text (void)
{
  static char text[160];
  if (!text[0])
    for (int i = 0; list_states[i]; i++)
      snprintf (text + strlen (text), sizeof text - strlen (text), "%s%s",
                i ? ", " : "", list_states[i]);
  return text;
}

/* A node id as "3" or "n3". */
int
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

/* 0, or a code with its sentence in err. */
static int
list_parse (int argc, char **argv, struct list_filter *f, char *err,
            size_t errlen)
{
  static const struct option opts[] = {
    { "owner", required_argument, NULL, 'o' },
    { "state", required_argument, NULL, 's' },
    { "after", required_argument, NULL, 'a' },
    { "limit", required_argument, NULL, 'l' },
    { NULL, 0, NULL, 0 },
  };
  char *end;
  int c;
  *f = (struct list_filter){ NULL };
  optind = 0;
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":", opts, NULL)) != -1)
    switch (c)
      {
      case 'o':
        if (parse_node (optarg, &f->owner) < 0)
          return create_errf (err, errlen, COW_E_USAGE,
                              "list: owner '%s' "
                              "is not a node id",
                              optarg);
        if (!cowd.clustered)
          return create_errf (err, errlen, COW_E_NOT_CLUSTERED,
                              "list "
                              "--owner: this cowd runs standalone; volumes "
                              "have owners only in a cluster");
        f->by_owner = true;
        break;
      case 's':
        if (list_parse_state (optarg) < 0)
          return create_errf (err, errlen, COW_E_USAGE,
                              "list: state '%s' is not one of %s", optarg,
                              list_states_text ());
        f->state = optarg;
        break;
      case 'a':
        f->after = optarg;
        break;
      case 'l':
        errno = 0;
        f->limit = strtoul (optarg, &end, 10);
        if (errno || *end || end == optarg || optarg[0] == '-' || f->limit == 0)
          return create_errf (err, errlen, COW_E_USAGE,
                              "list: limit '%s' "
                              "is not a whole number above 0",
                              optarg);
        break;
      case ':':
        return create_errf (err, errlen, COW_E_USAGE,
                            "list: option '%s' "
                            "needs a value",
                            argv[optind - 1]);
      default:
        return create_errf (err, errlen, COW_E_USAGE,
                            "list: unknown option"
                            " '%s'",
                            cmd_bad_option (argc, argv));
      }
  if (optind < argc - 1)
    return usage_err (err, errlen, "list");
  f->pattern = optind == argc - 1 ? argv[optind] : NULL;
  return 0;
}

static bool
list_match (const struct list_filter *f, const struct vol_entry *e)
{
  if (f->after && strcmp (e->name, f->after) <= 0)
    return false;
  if (f->pattern && fnmatch (f->pattern, e->name, 0) != 0)
    return false;
  if (f->state && strcmp (entry_state (e), f->state) != 0)
    return false;
  struct own_facts of;
  if (f->by_owner)
    return cowd.own->facts (e, &of) && of.owner == f->owner;
  return true;
}

/* The OWNER column of a clustered cowd: the node, or "-". */
static void
list_owner (const struct vol_entry *e, char *buf, size_t len)
{
  struct own_facts of;
  snprintf (buf, len, "-");
  if (cowd.own->facts (e, &of) && of.owner)
    snprintf (buf, len, "%u", of.owner);
}

static void
list_text_row (struct strbuf *sb, const struct vol_entry *e)
{
  char size[32] = "-", chunk[32] = "-", pct[16] = "-", owner[16] = "";
  char *uri = e->vol ? entry_uri (e) : NULL;
  if (e->vol)
    {
      const struct dscow_super *s = vol_super (e->vol);
      human_size (s->volume_size, size, sizeof size);
      human_size (s->chunk_size, chunk, sizeof chunk);
      snprintf (pct, sizeof pct, "%.1f",
                100.0 * (double) vol_cow_chunks (e->vol)
                    / (double) dscow_nr_chunks (s->volume_size, s->chunk_size));
    }
  if (cowd.clustered)
    list_owner (e, owner, sizeof owner);
  sb_printf (sb, "%-20s %-10s %10s %7s %7s %-6s %s%s%s\n", e->name,
             entry_state (e), size, chunk, pct, vol_commit_name (e->commit),
             owner, *owner ? " " : "", uri ? uri : "-");
  free (uri);
}

/* A list being built in slices of LIST_SLICE_NS of work (checked every
 * 64 volumes), one per loop callback, so a table of 100,000 holds up IO
 * for no more than one slice; a slice ends sooner once I/O waits
 * (cowd_io_waiting).  Between slices a
 * volume may be deleted: the job keeps the name and address of the last
 * one it looked at, goes on from its successor when the name still finds
 * that entry, else from the first name after it (the table is sorted by
 * name), so no volume is listed twice or skipped for a deletion. */
#define LIST_SLICE_NS 2000000ull

struct list_job
{
  struct ctl_req *req;
  struct list_filter f;
  bool json;
  char resume[DSCOW_NAME_MAX + 1]; /* "" before the first slice */
  const struct vol_entry *last;
  unsigned long n;
  struct strbuf sb;
  qb_loop_timer_handle timer;
};

static struct vol_entry *
list_resume (const struct list_job *j)
{
  if (!j->resume[0])
    return cowd.vols;
  struct vol_entry *e = voldb_find (j->resume);
  if (e && e == j->last)
    return e->next;
  for (e = cowd.vols; e && strcmp (e->name, j->resume) <= 0; e = e->next)
    ;
  return e;
}

static bool
list_full (const struct list_job *j)
{
  return j->f.limit && j->n >= j->f.limit;
}

static void
list_step (void *opaque)
{
  struct list_job *j = opaque;
  struct vol_entry *e = list_resume (j);
  uint64_t t0 = clock_now_ns ();
  for (int k = 1; e && !list_full (j); k++, e = e->next)
    {
      if (k % 64 == 0
          && (clock_now_ns () - t0 > LIST_SLICE_NS || cowd_io_waiting ()))
        break;
      j->last = e;
      if (!list_match (&j->f, e))
        continue;
      if (j->json && j->n)
        sb_puts (&j->sb, ",");
      if (j->json)
        entry_json (&j->sb, e, false);
      else
        list_text_row (&j->sb, e);
      j->n++;
    }
  if (e && !list_full (j))
    {
      snprintf (j->resume, sizeof j->resume, "%s", j->last->name);
      qb_loop_timer_add (cowd_loop (), QB_LOOP_LOW, 0, j, list_step, &j->timer);
      return;
    }
  if (j->json)
    sb_puts (&j->sb, "]\n");
  ctl_reply_take (j->req, &j->sb);
  free (j);
}

static void
cmd_list (struct ctl_req *req, int argc, char **argv, bool json)
{
  struct list_filter f;
  char err[COW_ERRLEN];
  int r = list_parse (argc, argv, &f, err, sizeof err);
  if (r != 0)
    return reply_fmt (req, r, "%s", err);
  struct list_job *j = calloc (1, sizeof *j);
  if (!j)
    return reply_fmt (req, COW_E_INTERNAL, "out of memory");
  *j = (struct list_job){ .req = req, .f = f, .json = json, .sb = STRBUF_INIT };
  if (json)
    sb_puts (&j->sb, "[");
  else
    sb_printf (&j->sb, "%-20s %-10s %10s %7s %7s %-6s %s%s\n", "NAME", "STATE",
               "SIZE", "CHUNK", "COW%", "COMMIT",
               cowd.clustered ? "OWNER " : "", "URI");
  list_step (j);
}

static void
status_text (struct strbuf *sb, const struct vol_entry *e, bool stats_only)
{
  if (!stats_only)
    {
      sb_printf (sb,
                 "name:        %s\nstate:       %s\nbase:        %s\n"
                 "cow:         %s\ncommit:      %s%s\n",
                 e->name, entry_state (e), e->base, e->cow,
                 vol_commit_name (e->commit),
                 e->buffered ? " (buffered)" : " (O_DIRECT)");
      struct own_facts of;
      if (cowd.own->facts (e, &of))
        sb_printf (
            sb, "cluster:     %s, owner node %u, epoch %" PRIu64 "%s%s\n",
            of.state, of.owner, of.epoch, of.exclusive ? ", exclusive" : "",
            of.bouncing ? ", BOUNCING" : "");
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
      sb_printf (sb,
                 "uuid:        %s\nsize:        %s (%" PRIu64 " bytes)\n"
                 "chunk size:  %s\nchunks:      %" PRIu64 " of %" PRIu64
                 " in the CoW layer (%.1f%%)\nepoch:       %" PRIu64
                 "\ngeneration:  %" PRIu64 "\nuri:         %s\n"
                 "connections: %u\nhealth:      %s\n",
                 uuid, size, s->volume_size, chunk, vol_cow_chunks (e->vol), n,
                 100.0 * (double) vol_cow_chunks (e->vol) / (double) n,
                 s->epoch, vol_generation (e->vol), uri ? uri : "",
                 nbd_export_connections (e->exp), vol_health (e->vol));
      free (uri);
      hydration_text (sb, e->vol);
      chain_status_text (sb, e->vol);
    }
  if (!e->vol)
    return;
  export_status_text (sb, e->vol);
  struct vol_stats st;
  vol_get_stats (e->vol, &st);
  sb_printf (sb,
             "reads:       %" PRIu64 " (%" PRIu64 " bytes: %" PRIu64
             " from base, %" PRIu64 " from CoW)\nwrites:      %" PRIu64
             " (%" PRIu64 " bytes)\ncow faults:  %" PRIu64 " (%" PRIu64
             " whole-chunk, no copy)\ncommits:     %" PRIu64
             " covering %" PRIu64
             " requests (%.1f per commit)\nflushes:     %" PRIu64
             "\ntrims:       %" PRIu64 "\nzeroes:      %" PRIu64
             "\nerrors:      %" PRIu64 "\nin flight:   %" PRIu64
             "\nblocking IO: %.3f ms (the loop "
             "waited: open, standalone takeover, close)\nhydrated:    %" PRIu64
             " chunks copied\ncommit time: p50 < %.3f ms, p99 < %.3f ms\n"
             "ownership:   taken %" PRIu64 " times, handed off %" PRIu64 "\n",
             st.reads, st.bytes_read, st.read_base_bytes, st.read_cow_bytes,
             st.writes, st.bytes_written, st.cow_faults, st.full_chunk_writes,
             st.commits, st.commit_faults,
             st.commits ? (double) st.commit_faults / (double) st.commits : 0.0,
             st.flushes, st.trims, st.zeroes, st.errors, st.in_flight,
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

/* --- top: one sample of every open volume's counters ---
 *
 * cowctl top asks for a sample each interval and shows the differences.
 * The sample is lines, whatever --json says (cowctl formats the rates):
 *   sample 1 MONOTONIC-NS
 *   NAME READS WRITES BYTES-READ BYTES-WRITTEN COW-FAULTS COMMITS
 *        followed by the VOL_HIST_BUCKETS commit latency buckets
 */
static void
cmd_top (struct ctl_req *req, int argc, char **argv, bool json)
{
  (void) json;
  if (argc != 1)
    return reply_usage (req, argv[0]);
  struct strbuf sb = STRBUF_INIT;
  sb_printf (&sb, "sample 1 %" PRIu64 "\n", clock_now_ns ());
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    {
      if (!e->vol)
        continue;
      struct vol_stats st;
      vol_get_stats (e->vol, &st);
      sb_printf (&sb,
                 "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                 " %" PRIu64,
                 e->name, st.reads, st.writes, st.bytes_read, st.bytes_written,
                 st.cow_faults, st.commits);
      for (int i = 0; i < VOL_HIST_BUCKETS; i++)
        sb_printf (&sb, " %" PRIu64, st.commit_hist[i]);
      sb_puts (&sb, "\n");
    }
  ctl_reply (req, 0, sb_str (&sb));
  sb_free (&sb);
}

/* --- hydrate / unbase --- */

/* A --rate: a whole number of MB/s (hydrate, export). */
int
parse_rate (const char *s, uint32_t *rate)
{
  char *end;
  errno = 0;
  unsigned long r = strtoul (s, &end, 10);
  if (errno || *end || end == s || r > UINT32_MAX || s[0] == '-')
    return -1;
  *rate = (uint32_t) r;
  return 0;
}

static void
cmd_hydrate (struct ctl_req *req, int argc, char **argv, bool json)
{
  static const struct option opts[] = {
    { "rate", required_argument, NULL, 'r' },
    { "cancel", no_argument, NULL, 'c' },
    { NULL, 0, NULL, 0 },
  };
  bool cancel = false;
  uint32_t rate = 0;
  int c;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    switch (c)
      {
      case 'r':
        if (parse_rate (optarg, &rate) < 0)
          return reply_fmt (req, COW_E_USAGE,
                            "rate '%s' is not a whole "
                            "number of MB/s",
                            optarg);
        break;
      case 'c':
        cancel = true;
        break;
      default:
        return reply_fmt (req, COW_E_USAGE,
                          "hydrate: unknown option "
                          "'%s'",
                          argv[optind - 1]);
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
                 : vol_hydrate_start (e->vol, rate, err, sizeof err);
  if (r < 0)
    return reply_fmt (req, COW_E_IO, "%s", err);
  if (json)
    return cmd_status_common (req, 2, (char *[]){ "status", e->name }, true,
                              false);
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
  struct vol_params p = { .name = e->name,
                          .cow_uri = e->cow,
                          .commit = e->commit,
                          .buffered = e->buffered };
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
    return reply_fmt (req, COW_E_USAGE,
                      "volume %s: unbase is only "
                      "supported on a standalone cowd",
                      e->name);
  char err[512];
  if ((e->vol ? vol_drop_base (e->vol, err, sizeof err)
              : unbase_check_detached (e, err, sizeof err))
      < 0)
    return reply_fmt (req, COW_E_IO, "%s", err);
  char *old = e->base;
  if (!(e->base = strdup (VOLDB_NO_BASE)))
    {
      e->base = old;
      return reply_fmt (req, COW_E_INTERNAL, "volume %s: out of memory",
                        e->name);
    }
  if (voldb_store (e) < 0)
    return reply_fmt (req, COW_E_IO,
                      "volume %s: the base is closed, "
                      "but saving the definition in %s failed",
                      e->name, cowd.state_dir);
  qb_log (LOG_INFO, "cowd: %s: base %s dropped from the definition", e->name,
          old);
  reply_fmt (req, 0,
             json ? "{\"name\":\"%s\",\"base\":null}\n"
                  : "%s: the base is no longer used\n",
             e->name);
  free (old);
}

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
  { "create", cmd_create },     { "attach", cmd_attach },
  { "detach", cmd_detach },     { "delete", cmd_delete },
  { "list", cmd_list },         { "status", cmd_status },
  { "stats", cmd_stats },       { "top", cmd_top },
  { "hydrate", cmd_hydrate },   { "unbase", cmd_unbase },
  { "snapshot", cmd_snapshot }, { "snapshots", cmd_snapshots },
  { "rollback", cmd_rollback }, { "reset", cmd_reset },
  { "merge", cmd_merge },       { "export", cmd_export },
  { "debug", cmd_debug },       { "help", cmd_help },
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
    return reply_fmt (req, COW_E_USAGE,
                      "unknown command '%s' (see cowctl "
                      "help)",
                      argv[0]);
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp (argv[0], cmds[i].name) == 0)
      return cmds[i].fn (req, argc, argv, json);
  for (size_t i = 0; i < cluster_ncmds; i++)
    if (strcmp (argv[0], cluster_cmds[i].name) == 0)
      return cluster_cmds[i].fn (req, argc, argv, json);
  reply_fmt (req, COW_E_NOT_CLUSTERED,
             "%s: this cowd was built without "
             "corosync; cluster commands are not available",
             argv[0]);
}
