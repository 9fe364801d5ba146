/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cowfence-pr: a diagnostic tool for SCSI-3 persistent reservations, on
 * libcowfence, for people and for the system tests.
 *
 *   cowfence-pr [--initiator IQN] [--json] [--lba N] TARGET COMMAND [ARGS]
 *
 * TARGET is iscsi://HOST[:PORT]/TARGET-IQN/LUN (its own libiscsi session)
 * or a SCSI block / sg device path (SG_IO).  Commands:
 *
 *   read-keys | read-reservation | register KEY | reserve KEY
 *   preempt MYKEY VICTIMKEY | unregister KEY | clear KEY | write-test
 *   | read-test
 *
 * A KEY is a number (0x... for hex) or CLUSTER:NODEID (fence_key).
 * write-test reads one block at --lba (default 0) and writes the same
 * bytes back with WRITE16 (a device: pread/pwrite with O_DIRECT);
 * read-test only reads it ("read ok").
 * COMMAND "-" reads one command per line from standard input and runs them
 * all on the same session, so that a test can hold one registered I_T
 * nexus across steps (a registration belongs to its session).
 *
 * Exit status: 0 done, 1 failed, 2 usage, 3 write rejected with
 * RESERVATION CONFLICT.  UNIT ATTENTIONs are retried and noted on stderr.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "fence.h"

#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_CONFLICT 3
#define CLI_UA_RETRIES 8
#define CLI_MAX_KEYS 256
#define CLI_MAX_ARGS 4
#define CLI_DEFAULT_IQN "iqn.2024-01.org.cowherd:cowfence-pr"

struct cli
{
  bool json;
  const char *initiator;
  uint64_t lba;
  char label[600];
  struct iscsi_context *iscsi; /* an iscsi:// target's session (dev's) */
  int lun;
  struct fence_dev *dev; /* NULL: the device has no SG_IO */
  char dev_err[512];
};

static void
cli_usage (FILE *f)
{
  fprintf (f, "usage: cowfence-pr [--initiator IQN] [--json] [--lba N] "
              "iscsi://HOST[:PORT]/IQN/LUN|DEVICE COMMAND [ARGS]\n"
              "commands: read-keys, read-reservation, register KEY, "
              "reserve KEY,\n  preempt MYKEY VICTIMKEY, unregister KEY, "
              "clear KEY, write-test, read-test,\n  - (commands from stdin)\n"
              "KEY: a number (0x... hex) or CLUSTER:NODEID\n");
}

static int
cli_key (const char *s, uint64_t *key)
{
  const char *colon = strrchr (s, ':');
  char *end, cluster[256];
  unsigned long long v;

  errno = 0;
  v = strtoull (colon ? colon + 1 : s, &end, 0);
  if (errno || *end || end == (colon ? colon + 1 : s))
    {
      fprintf (stderr,
               "cowfence-pr: bad key '%s' (a number or "
               "CLUSTER:NODEID)\n",
               s);
      return -1;
    }
  if (!colon)
    *key = v;
  else
    {
      snprintf (cluster, sizeof cluster, "%.*s", (int) (colon - s), s);
      *key = fence_key (cluster, (uint32_t) v);
    }
  return 0;
}

static struct fence_dev *
cli_dev (struct cli *c)
{
  if (!c->dev)
    fprintf (stderr, "%s\n", c->dev_err);
  return c->dev;
}

static int
cli_fail (struct cli *c)
{
  fprintf (stderr, "%s\n", fence_last_error (c->dev));
  return CLI_EXIT_FAIL;
}

/* Reading */

static int
cli_read_keys (struct cli *c, char **argv)
{
  uint64_t keys[CLI_MAX_KEYS];
  uint32_t gen;
  size_t n;

  (void) argv;
  if (fence_read_keys (c->dev, keys, CLI_MAX_KEYS, &n, &gen) < 0)
    return cli_fail (c);
  if (n > CLI_MAX_KEYS)
    n = CLI_MAX_KEYS;
  if (c->json)
    printf ("{\"generation\": %" PRIu32 ", \"keys\": [", gen);
  else
    printf ("generation %" PRIu32 ", %zu key%s\n", gen, n, n == 1 ? "" : "s");
  for (size_t i = 0; i < n; i++)
    if (c->json)
      printf ("%s{\"key\": \"0x%016" PRIx64 "\", \"nodeid\": %" PRIu32 "}",
              i ? ", " : "", keys[i], fence_key_nodeid (keys[i]));
    else
      printf ("  0x%016" PRIx64 "  node %" PRIu32 "\n", keys[i],
              fence_key_nodeid (keys[i]));
  if (c->json)
    printf ("]}\n");
  return 0;
}

static int
cli_read_reservation (struct cli *c, char **argv)
{
  uint64_t holder;
  int type;
  bool held;

  (void) argv;
  if (fence_read_reservation (c->dev, &holder, &type, &held) < 0)
    return cli_fail (c);
  if (c->json && held)
    printf ("{\"held\": true, \"holder\": \"0x%016" PRIx64 "\", "
            "\"nodeid\": %" PRIu32 ", \"type\": %d, \"type_name\": "
            "\"%s\"}\n",
            holder, fence_key_nodeid (holder), type, fence_type_name (type));
  else if (c->json)
    printf ("{\"held\": false}\n");
  else if (held)
    printf ("reserved by 0x%016" PRIx64 " (node %" PRIu32 "), type %d "
            "(%s)\n",
            holder, fence_key_nodeid (holder), type, fence_type_name (type));
  else
    printf ("not reserved\n");
  return 0;
}

/* Changing registrations */

static int
cli_key_op (struct cli *c, char **argv,
            int (*op) (struct fence_dev *, uint64_t), const char *done)
{
  uint64_t key;

  if (cli_key (argv[0], &key) < 0)
    return CLI_EXIT_USAGE;
  if (op (c->dev, key) < 0)
    return cli_fail (c);
  printf ("%s 0x%016" PRIx64 " (node %" PRIu32 ")\n", done, key,
          fence_key_nodeid (key));
  return 0;
}

static int
cli_register (struct cli *c, char **argv)
{
  return cli_key_op (c, argv, fence_register, "registered");
}

static int
cli_reserve (struct cli *c, char **argv)
{
  return cli_key_op (c, argv, fence_reserve, "reserved (type 5) with");
}

static int
cli_unregister (struct cli *c, char **argv)
{
  return cli_key_op (c, argv, fence_unregister, "unregistered");
}

static int
cli_clear (struct cli *c, char **argv)
{
  return cli_key_op (c, argv, fence_clear, "cleared with");
}

static int
cli_preempt (struct cli *c, char **argv)
{
  uint64_t mine, victim;

  if (cli_key (argv[0], &mine) < 0 || cli_key (argv[1], &victim) < 0)
    return CLI_EXIT_USAGE;
  if (fence_preempt (c->dev, mine, victim) < 0)
    return cli_fail (c);
  printf ("preempted 0x%016" PRIx64 " (node %" PRIu32 ")\n", victim,
          fence_key_nodeid (victim));
  return 0;
}

/* write-test on iSCSI */

/* A task that came back UNIT ATTENTION is noted and freed: true. */
static bool
cli_isc_ua (struct cli *c, struct scsi_task **t, const char *what)
{
  if (!*t || (*t)->status != SCSI_STATUS_CHECK_CONDITION
      || (*t)->sense.key != SCSI_SENSE_UNIT_ATTENTION)
    return false;
  fprintf (stderr,
           "cowfence-pr: %s: %s: UNIT ATTENTION %02X/%02X, sending "
           "again\n",
           c->label, what, ((*t)->sense.ascq >> 8) & 0xff,
           (*t)->sense.ascq & 0xff);
  scsi_free_scsi_task (*t);
  *t = NULL;
  return true;
}

static int
cli_isc_failed (struct cli *c, struct scsi_task *t, const char *what)
{
  fprintf (stderr, "cowfence-pr: %s: %s failed: status 0x%x: %s\n", c->label,
           what, t ? (unsigned) t->status : 0u, iscsi_get_error (c->iscsi));
  if (t)
    scsi_free_scsi_task (t);
  return CLI_EXIT_FAIL;
}

static int
cli_isc_block_size (struct cli *c, uint32_t *bs)
{
  struct scsi_readcapacity16 *rc;
  struct scsi_task *t;
  int i = 0;

  do
    t = iscsi_readcapacity16_sync (c->iscsi, c->lun);
  while (cli_isc_ua (c, &t, "READ CAPACITY(16)") && ++i < CLI_UA_RETRIES);
  if (!t || t->status != SCSI_STATUS_GOOD || !(rc = scsi_datain_unmarshall (t))
      || rc->block_length == 0 || rc->block_length > 65536)
    return cli_isc_failed (c, t, "READ CAPACITY(16)");
  *bs = rc->block_length;
  scsi_free_scsi_task (t);
  return 0;
}

static int
cli_isc_read (struct cli *c, unsigned char *buf, uint32_t bs)
{
  struct scsi_task *t;
  int i = 0;

  do
    t = iscsi_read16_sync (c->iscsi, c->lun, c->lba, bs, bs, 0, 0, 0, 0, 0);
  while (cli_isc_ua (c, &t, "READ(16)") && ++i < CLI_UA_RETRIES);
  if (!t || t->status != SCSI_STATUS_GOOD || t->datain.size < (int) bs)
    return cli_isc_failed (c, t, "READ(16)");
  memcpy (buf, t->datain.data, bs);
  scsi_free_scsi_task (t);
  return 0;
}

static int
cli_isc_write (struct cli *c, unsigned char *buf, uint32_t bs)
{
  struct scsi_task *t;
  int i = 0;

  do
    t = iscsi_write16_sync (c->iscsi, c->lun, c->lba, buf, bs, bs, 0, 0, 0, 0,
                            0);
  while (cli_isc_ua (c, &t, "WRITE(16)") && ++i < CLI_UA_RETRIES);
  if (t && t->status == SCSI_STATUS_RESERVATION_CONFLICT)
    {
      scsi_free_scsi_task (t);
      printf ("write rejected: reservation conflict\n");
      return CLI_EXIT_CONFLICT;
    }
  if (!t || t->status != SCSI_STATUS_GOOD)
    return cli_isc_failed (c, t, "WRITE(16)");
  scsi_free_scsi_task (t);
  printf ("write ok\n");
  return 0;
}

static int
cli_read_test_iscsi (struct cli *c)
{
  unsigned char *buf;
  uint32_t bs;
  int r;

  if ((r = cli_isc_block_size (c, &bs)) != 0)
    return r;
  if (!(buf = malloc (bs)))
    return CLI_EXIT_FAIL;
  if ((r = cli_isc_read (c, buf, bs)) == 0)
    printf ("read ok\n");
  free (buf);
  return r;
}

static int
cli_write_test_iscsi (struct cli *c)
{
  unsigned char *buf;
  uint32_t bs;
  int r;

  if ((r = cli_isc_block_size (c, &bs)) != 0)
    return r;
  if (!(buf = malloc (bs)))
    return CLI_EXIT_FAIL;
  if ((r = cli_isc_read (c, buf, bs)) == 0)
    r = cli_isc_write (c, buf, bs);
  free (buf);
  return r;
}

/* write-test on a block device: the kernel turns RESERVATION CONFLICT
 * into EBADE. */
static int
cli_write_test_dev (struct cli *c, bool write)
{
  int fd = open (c->label, O_RDWR | O_DIRECT), bs = 512, r = CLI_EXIT_FAIL;
  void *buf = NULL;

  if (fd < 0 || ioctl (fd, BLKSSZGET, &bs) < 0 || bs < 512
      || posix_memalign (&buf, 4096, bs) != 0)
    fprintf (stderr, "cowfence-pr: %s: %m\n", c->label);
  else if (pread (fd, buf, bs, c->lba * bs) != bs)
    fprintf (stderr, "cowfence-pr: %s: read failed: %m\n", c->label);
  else if (!write)
    {
      printf ("read ok\n");
      r = 0;
    }
  else if (pwrite (fd, buf, bs, c->lba * bs) == bs)
    {
      printf ("write ok\n");
      r = 0;
    }
  else if (errno == EBADE)
    {
      printf ("write rejected: reservation conflict\n");
      r = CLI_EXIT_CONFLICT;
    }
  else
    fprintf (stderr, "cowfence-pr: %s: write failed: %m\n", c->label);
  free (buf);
  if (fd >= 0)
    close (fd);
  return r;
}

static int
cli_write_test (struct cli *c, char **argv)
{
  (void) argv;
  return c->iscsi ? cli_write_test_iscsi (c) : cli_write_test_dev (c, true);
}

static int
cli_read_test (struct cli *c, char **argv)
{
  (void) argv;
  return c->iscsi ? cli_read_test_iscsi (c) : cli_write_test_dev (c, false);
}

/* Commands */

static const struct cli_cmd
{
  const char *name;
  int nargs;
  bool needs_dev;
  int (*fn) (struct cli *c, char **argv);
} cli_cmds[] = {
  { "read-keys", 0, true, cli_read_keys },
  { "read-reservation", 0, true, cli_read_reservation },
  { "register", 1, true, cli_register },
  { "reserve", 1, true, cli_reserve },
  { "preempt", 2, true, cli_preempt },
  { "unregister", 1, true, cli_unregister },
  { "clear", 1, true, cli_clear },
  { "write-test", 0, false, cli_write_test },
  { "read-test", 0, false, cli_read_test },
};

static int
cli_run (struct cli *c, int argc, char **argv)
{
  for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
    {
      const struct cli_cmd *cmd = &cli_cmds[i];

      if (strcmp (argv[0], cmd->name) != 0)
        continue;
      if (argc - 1 != cmd->nargs)
        {
          fprintf (stderr, "cowfence-pr: %s takes %d argument%s\n", cmd->name,
                   cmd->nargs, cmd->nargs == 1 ? "" : "s");
          return CLI_EXIT_USAGE;
        }
      if (cmd->needs_dev && !cli_dev (c))
        return CLI_EXIT_FAIL;
      return cmd->fn (c, argv + 1);
    }
  fprintf (stderr, "cowfence-pr: unknown command '%s'\n", argv[0]);
  cli_usage (stderr);
  return CLI_EXIT_USAGE;
}

/* "-": one command per line on stdin; the status of the last one. */
static int
cli_script (struct cli *c)
{
  char line[1024], *argv[CLI_MAX_ARGS + 1], *save;
  int argc, r = 0;

  while (fgets (line, sizeof line, stdin))
    {
      argc = 0;
      for (char *w = strtok_r (line, " \t\n", &save); w && argc <= CLI_MAX_ARGS;
           w = strtok_r (NULL, " \t\n", &save))
        argv[argc++] = w;
      if (argc == 0 || argv[0][0] == '#')
        continue;
      r = argc > CLI_MAX_ARGS ? CLI_EXIT_USAGE : cli_run (c, argc, argv);
      printf ("status %d\n", r);
      fflush (stdout);
      fflush (stderr);
    }
  return r;
}

/* Opening the target: fence_dev_open logs in to an iscsi:// target (the
 * session the reads and writes of read-test and write-test then use, so
 * they run on the nexus that registered) or opens a device.  A device
 * without SG_IO (a loop device) still takes read-test and write-test. */

static int
cli_open (struct cli *c, const char *name)
{
  struct fence_login login = { .initiator = c->initiator };
  snprintf (c->label, sizeof c->label, "%s", name);
  c->dev = fence_dev_open (name, &login, c->dev_err, sizeof c->dev_err);
  if (c->dev)
    {
      c->iscsi = fence_dev_iscsi_context (c->dev, &c->lun);
      return 0;
    }
  if (errno == EOPNOTSUPP && strncmp (name, "iscsi://", 8) != 0)
    return 0; /* no SG_IO: cli_dev says so when needed */
  fprintf (stderr, "cowfence-pr: %s\n", c->dev_err);
  return -1;
}

static void
cli_close (struct cli *c)
{
  fence_dev_free (c->dev);
}

static int
cli_options (struct cli *c, int argc, char **argv)
{
  static const struct option opts[] = {
    { "initiator", required_argument, NULL, 'i' },
    { "json", no_argument, NULL, 'j' },
    { "lba", required_argument, NULL, 'l' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int o;

  while ((o = getopt_long (argc, argv, "i:jl:h", opts, NULL)) != -1)
    if (o == 'i')
      c->initiator = optarg;
    else if (o == 'j')
      c->json = true;
    else if (o == 'l')
      c->lba = strtoull (optarg, NULL, 0);
    else
      {
        cli_usage (o == 'h' ? stdout : stderr);
        exit (o == 'h' ? 0 : CLI_EXIT_USAGE);
      }
  return optind;
}

int
main (int argc, char **argv)
{
  struct cli c = { .initiator = CLI_DEFAULT_IQN };
  int i = cli_options (&c, argc, argv), r;

  if (argc - i < 2)
    {
      cli_usage (stderr);
      return CLI_EXIT_USAGE;
    }
  r = cli_open (&c, argv[i]);
  if (r == 0)
    r = strcmp (argv[i + 1], "-") == 0
            ? cli_script (&c)
            : cli_run (&c, argc - i - 1, argv + i + 1);
  else
    r = CLI_EXIT_FAIL;
  cli_close (&c);
  return r;
}
