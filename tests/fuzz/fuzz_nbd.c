/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz_nbd.c: a libFuzzer target for cowd's NBD server (node/nbd/
 * nbd-server.c): the handshake, option haggling, requests and their
 * payloads, as a client sends them.
 *
 * The server is driven whole, not through pieces cut out of it: once per
 * process a 1 MiB volume is formatted on files (in $TMPDIR) and opened with
 * the real engine, and for each input a connection is made on a socketpair
 * (conn_new, as export_accept does for an accepted socket), the input is
 * written to the client's end, which is then shut for writing, and the
 * loop runs until the server has closed the connection and nothing is in
 * flight in the engine.  Replies are read and thrown away.  Inputs longer
 * than 60000 bytes are cut (they must fit in the socket's buffer).  This
 * file includes nbd-server.c to reach conn_new; the code fuzzed is the
 * code cowd runs.  The volume is named "fuzz".  Build and run: see
 * tests/fuzz/fuzz.sh.
 */
#include "../../node/nbd/nbd-server.c"

#include <fcntl.h>
#include "fuzz.h"

#define FUZZ_VOL (1u << 20)

static struct nbd_export *fz_exp;
static struct volume *fz_vol;
static char fz_dir[128];
static bool fz_eof;

static void
fuzz_cleanup (void)
{
  char path[256];
  const char *names[] = { "base", "cow", "sock" };
  for (int i = 0; i < 3; i++)
    {
      snprintf (path, sizeof path, "%s/%s", fz_dir, names[i]);
      unlink (path);
    }
  rmdir (fz_dir);
}

static void
fuzz_file (const char *name, size_t size, bool pattern, char *path, size_t plen)
{
  snprintf (path, plen, "%s/%s", fz_dir, name);
  int fd = open (path, O_CREAT | O_RDWR | O_TRUNC, 0600);
  FUZZ_CHECK (fd >= 0 && ftruncate (fd, (off_t) size) == 0);
  for (size_t i = 0; pattern && i < size; i += 4096)
    {
      uint8_t b[4096];
      memset (b, (int) (i / 4096), sizeof b);
      FUZZ_CHECK (pwrite (fd, b, sizeof b, (off_t) i) == sizeof b);
    }
  close (fd);
}

static void
fuzz_setup (void)
{
  char base[160], cow[160], sock[160], err[512];
  const char *tmp = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
  snprintf (fz_dir, sizeof fz_dir, "%s/fuzz_nbd.XXXXXX", tmp);
  FUZZ_CHECK (mkdtemp (fz_dir) != NULL);
  atexit (fuzz_cleanup);
  qb_log_filter_ctl (QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
                     LOG_EMERG);
  cowd_loop_set (qb_loop_create ());
  fuzz_file ("base", FUZZ_VOL, true, base, sizeof base);
  fuzz_file ("cow", 2 * FUZZ_VOL, false, cow, sizeof cow);
  snprintf (sock, sizeof sock, "%s/sock", fz_dir);
  struct vol_params p = { .name = "fuzz",
                          .base_uri = base,
                          .cow_uri = cow,
                          .chunk_size = 65536,
                          .commit = DSCOW_COMMIT_SYNC,
                          .buffered = true };
  struct backend_opts bo = { 0 };
  FUZZ_CHECK (vol_format (&p, &bo, err, sizeof err) == 0);
  FUZZ_CHECK (vol_open (&p, &bo, &fz_vol, err, sizeof err) == 0);
  FUZZ_CHECK (vol_takeover (fz_vol, 1, 1, 0, err, sizeof err) == 0);
  fz_exp = nbd_export_new (fz_vol, sock, err, sizeof err);
  FUZZ_CHECK (fz_exp != NULL);
}

static int
fuzz_client_read (int fd, int revents, void *data)
{
  char buf[65536];
  ssize_t n;
  while ((n = read (fd, buf, sizeof buf)) > 0)
    ;
  if (n == 0 || (n < 0 && errno != EAGAIN))
    {
      fz_eof = true;
      qb_loop_poll_del (cowd_loop (), fd);
    }
  return 0;
}

/* Runs every loop iteration until the server is done with the input. */
static void
fuzz_check_done (void *data)
{
  struct vol_stats st;
  vol_get_stats (fz_vol, &st);
  if (fz_eof && fz_exp->nconns == 0 && st.in_flight == 0)
    qb_loop_stop (cowd_loop ());
  else
    qb_loop_job_add (cowd_loop (), QB_LOOP_LOW, NULL, fuzz_check_done);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  int sv[2];
  if (!fz_exp)
    fuzz_setup ();
  if (size > 60000)
    size = 60000;
  FUZZ_CHECK (
      socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)
      == 0);
  int sndbuf = 1 << 20;
  setsockopt (sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  FUZZ_CHECK (size == 0 || write (sv[1], data, size) == (ssize_t) size);
  shutdown (sv[1], SHUT_WR);
  fz_eof = false;
  conn_new (fz_exp, sv[0]);
  qb_loop_poll_add (cowd_loop (), QB_LOOP_HIGH, sv[1], POLLIN, NULL,
                    fuzz_client_read);
  qb_loop_job_add (cowd_loop (), QB_LOOP_LOW, NULL, fuzz_check_done);
  qb_loop_run (cowd_loop ());
  close (sv[1]);
  return 0;
}
