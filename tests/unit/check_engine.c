/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_engine.c: the volume engine against a model, on real files,
 * through io_uring, on a real qb_loop.
 *
 * Many requests of random sizes and alignments run at once (reads,
 * writes, write-zeroes, flushes) over a small volume with small chunks, so
 * that CoW faults, whole-chunk writes, read-modify-writes and waits on
 * chunk locks all happen concurrently.  Every read is checked against a
 * model that is updated when a write is acknowledged; concurrent
 * overlapping requests are avoided in the generator (their order is
 * undefined), everything else may overlap in time.  Then the volume is
 * closed, opened again and compared with the model byte for byte, and the
 * base file is checked unchanged.  The same clients run over layer chains
 * (snapshots, rollback, reset, hydration from the layers: test_chain).
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <qb/qbloop.h>

#include "loop.h"
#include "volume.h"

#define VOL_SIZE (4u * 1024 * 1024)
#define CHUNK 16384u
#define MAX_INFLIGHT 32
#define MAX_LEN (96u * 1024)

static qb_loop_t *loop; /* handed to the engine: cowd_loop_set */

static char dir[64];
static uint8_t *model, *base_copy;
static struct volume *vol;
static bool buffered; /* the CoW through the page cache */

struct op
{
  int kind; /* 0 read, 1 write, 2 zeroes, 3 flush */
  uint64_t off;
  uint32_t len;
  void *buf;
  bool busy;
};

static struct op ops[MAX_INFLIGHT];
static unsigned remaining, inflight, errors;

static void
write_file (const char *path, const void *buf, size_t len)
{
  int fd = open (path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, buf, len), (ssize_t) len);
  close (fd);
}

static bool
overlaps_busy (uint64_t off, uint32_t len)
{
  for (int i = 0; i < MAX_INFLIGHT; i++)
    if (ops[i].busy && ops[i].kind != 3 && off < ops[i].off + ops[i].len
        && ops[i].off < off + len)
      return true;
  return false;
}

static void issue (struct op *o);

static void
op_done (void *opaque, int res)
{
  struct op *o = opaque;
  if (res != 0)
    {
      fprintf (stderr, "op kind %d off %llu len %u failed: %s\n", o->kind,
               (unsigned long long) o->off, o->len, strerror (-res));
      errors++;
    }
  else if (o->kind == 0 && memcmp (o->buf, model + o->off, o->len) != 0)
    {
      fprintf (stderr, "read at %llu len %u returned wrong data\n",
               (unsigned long long) o->off, o->len);
      errors++;
    }
  else if (o->kind == 1)
    memcpy (model + o->off, o->buf, o->len);
  else if (o->kind == 2)
    memset (model + o->off, 0, o->len);
  free (o->buf);
  o->buf = NULL;
  o->busy = false;
  inflight--;
  if (remaining > 0)
    issue (o);
  else if (inflight == 0)
    qb_loop_stop (loop);
}

static void
issue (struct op *o)
{
  uint64_t off;
  uint32_t len;
  do
    {
      /* Mostly aligned 4K multiples; sometimes 512-byte or odd edges. */
      int style = rand () % 8;
      len = (uint32_t) (1 + rand () % (MAX_LEN / 4096)) * 4096;
      off = (uint64_t) (rand () % (VOL_SIZE / 4096)) * 4096;
      if (style == 0)
        off += (uint64_t) (rand () % 8) * 512, len = 512 * (1 + rand () % 16);
      else if (style == 1)
        off += (uint64_t) (rand () % 4096),
            len = 1 + (uint32_t) (rand () % 9000);
      if (off + len > VOL_SIZE)
        len = (uint32_t) (VOL_SIZE - off);
    }
  while (len == 0 || overlaps_busy (off, len));
  remaining--;
  inflight++;
  o->busy = true;
  o->off = off;
  o->len = len;
  o->kind = rand () % 10 < 4    ? 0
            : rand () % 10 == 0 ? 2
            : rand () % 20 == 0 ? 3
                                : 1;
  ck_assert_int_eq (posix_memalign (&o->buf, 4096, len), 0);
  memset (o->buf, 0, len); /* valgrind cannot see io_uring fill it */
  int r;
  switch (o->kind)
    {
    case 0:
      r = vol_read (vol, o->buf, off, len, op_done, o);
      break;
    case 1:
      for (uint32_t i = 0; i < len; i++)
        ((uint8_t *) o->buf)[i] = (uint8_t) rand ();
      r = vol_write (vol, o->buf, off, len, rand () % 8 == 0 ? VOL_FUA : 0,
                     op_done, o);
      break;
    case 2:
      r = vol_write_zeroes (vol, off, len, 0, op_done, o);
      break;
    default:
      o->len = 0;
      r = vol_flush (vol, op_done, o);
      break;
    }
  ck_assert_int_eq (r, 0);
}

static void
closed (void *opaque, int res)
{
  ck_assert_int_eq (res, 0);
  qb_loop_stop (loop);
}

static void
open_volume (const char *name, enum dscow_commit commit, bool format)
{
  char base[128], cow[128], err[512];
  snprintf (base, sizeof base, "%s/base.img", dir);
  snprintf (cow, sizeof cow, "%s/cow-%s.img", dir, name);
  struct vol_params p = { .name = name,
                          .base_uri = base,
                          .cow_uri = cow,
                          .chunk_size = CHUNK,
                          .commit = commit,
                          .buffered = buffered };
  struct backend_opts bo = { .direct = true };
  if (format)
    {
      int fd = open (cow, O_CREAT | O_RDWR, 0600);
      ck_assert_int_ge (fd, 0);
      ck_assert_int_eq (ftruncate (fd, VOL_SIZE + 1024 * 1024), 0);
      close (fd);
      int r = vol_format (&p, &bo, err, sizeof err);
      ck_assert_msg (r == 0, "format: %s", err);
    }
  int r = vol_open (&p, &bo, &vol, err, sizeof err);
  ck_assert_msg (r == 0, "open: %s", err);
  ck_assert_int_eq (vol_takeover (vol, 1, 1, 0, err, sizeof err), 0);
}

/* n random requests; a quarter of them under COWHERD_TEST_QUICK (make
 * check-valgrind sets it: memcheck runs them about 30 times slower, and
 * a quarter still crosses every path many times). */
static void
run_random (unsigned n)
{
  if (getenv ("COWHERD_TEST_QUICK"))
    n = n / 4 + 1;
  remaining = n;
  for (int i = 0; i < MAX_INFLIGHT; i++)
    issue (&ops[i]);
  qb_loop_run (loop);
  ck_assert_int_eq (errors, 0);
}

static void
verify_cb (void *opaque, int res)
{
  *(int *) opaque = res;
  qb_loop_stop (loop);
}

static void
verify_whole (void)
{
  uint8_t *buf;
  ck_assert_int_eq (posix_memalign ((void **) &buf, 4096, VOL_SIZE), 0);
  memset (buf, 0, VOL_SIZE);
  int res = 1;
  ck_assert_int_eq (vol_read (vol, buf, 0, VOL_SIZE, verify_cb, &res), 0);
  qb_loop_run (loop);
  ck_assert_int_eq (res, 0);
  ck_assert_int_eq (memcmp (buf, model, VOL_SIZE), 0);
  free (buf);
}

static void
setup (void)
{
  snprintf (dir, sizeof dir, "/tmp/check_engine.XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (dir));
  if (!loop)
    {
      loop = qb_loop_create (); /* the io_uring eventfd lives on it */
      cowd_loop_set (loop);
    }
  model = malloc (VOL_SIZE);
  base_copy = malloc (VOL_SIZE);
  for (size_t i = 0; i < VOL_SIZE; i++)
    base_copy[i] = (uint8_t) (i * 2654435761u >> 13);
  memcpy (model, base_copy, VOL_SIZE);
  char base[128];
  snprintf (base, sizeof base, "%s/base.img", dir);
  write_file (base, base_copy, VOL_SIZE);
  srand (42);
  errors = 0;
  buffered = false;
}

static void
teardown (void)
{
  char cmd[128];
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq (system (cmd), 0);
  free (model);
  free (base_copy);
}

static void
reopen_and_verify (const char *name, enum dscow_commit commit)
{
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
  open_volume (name, commit, false);
  if (commit == DSCOW_COMMIT_NONE)
    memcpy (model, base_copy, VOL_SIZE); /* transient: reset */
  verify_whole ();
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
  /* The base was never written. */
  char base[128];
  snprintf (base, sizeof base, "%s/base.img", dir);
  FILE *f = fopen (base, "rb");
  uint8_t *buf = malloc (VOL_SIZE);
  ck_assert_int_eq (fread (buf, 1, VOL_SIZE, f), VOL_SIZE);
  fclose (f);
  ck_assert_int_eq (memcmp (buf, base_copy, VOL_SIZE), 0);
  free (buf);
}

static void
engine_policy (const char *name, enum dscow_commit commit)
{
  open_volume (name, commit, true);
  run_random (4000);
  verify_whole ();
  struct vol_stats st;
  vol_get_stats (vol, &st);
  ck_assert_uint_gt (st.cow_faults, 0);
  if (commit == DSCOW_COMMIT_SYNC)
    {
      ck_assert_uint_gt (st.commits, 0);
      /* Group commit: fewer commits than faults under concurrency. */
      ck_assert_uint_lt (st.commits, st.cow_faults);
    }
  reopen_and_verify (name, commit);
}

/* Hydration while the random clients run: a copy never overwrites what a
 * client wrote, a read never sees a half-copied chunk (both checked by
 * the model), and at the end every chunk is in the CoW layer, the
 * superblock says hydrated, and the volume reads the same without its
 * base. */
static void
hydrated_poll (void *data)
{
  struct vol_hydrate h;
  vol_hydrate_info (vol, &h);
  if (h.hydrated)
    {
      qb_loop_stop (loop);
      return;
    }
  qb_loop_timer_handle t;
  qb_loop_timer_add (loop, QB_LOOP_LOW, 10000000, NULL, hydrated_poll, &t);
}

START_TEST (test_hydrate)
{
  char err[512];
  open_volume ("vhyd", DSCOW_COMMIT_SYNC, true);
  ck_assert_int_eq (vol_hydrate_start (vol, 0, err, sizeof err), 0);
  run_random (4000);
  qb_loop_timer_handle t;
  qb_loop_timer_add (loop, QB_LOOP_LOW, 0, NULL, hydrated_poll, &t);
  qb_loop_run (loop);
  verify_whole ();
  struct vol_hydrate h;
  vol_hydrate_info (vol, &h);
  ck_assert_uint_eq (h.done, h.total);
  ck_assert_uint_gt (h.copied, 0);
  ck_assert (vol_super (vol)->flags & DSCOW_FLAG_HYDRATED);
  ck_assert_int_eq (vol_drop_base (vol, err, sizeof err), 0);
  verify_whole (); /* served from the CoW alone */
  reopen_and_verify ("vhyd", DSCOW_COMMIT_SYNC);
}
END_TEST

/* Hydration's copies are committed together, about once a second, not
 * one commit each: at --rate 1 a copy is 96 KiB (a tenth of a second), so
 * 1.2 s is a dozen copies and at most two commits (a commit per copy put
 * two flushes of the CoW in front of a client's reads each time).  What
 * was copied reads the same after a reopen. */
static void
stop_loop (void *data)
{
  qb_loop_stop (loop);
}

START_TEST (test_hydrate_commits)
{
  char err[512];
  open_volume ("vhc", DSCOW_COMMIT_SYNC, true);
  ck_assert_int_eq (vol_hydrate_start (vol, 1, err, sizeof err), 0);
  qb_loop_timer_handle t;
  qb_loop_timer_add (loop, QB_LOOP_LOW, 1200000000ull, NULL, stop_loop, &t);
  qb_loop_run (loop);
  struct vol_stats st;
  vol_get_stats (vol, &st);
  ck_assert_uint_ge (st.hydrated_chunks, 8 * 6);
  ck_assert_uint_le (st.commits, 2);
  reopen_and_verify ("vhc", DSCOW_COMMIT_SYNC);
}
END_TEST

/* Layer chains: the random clients run over base <- s1 <- s2 <- s3 <-
 * top, each snapshot taken between runs, so that reads come from every
 * layer and faults copy from the nearest one.  The chain is found again
 * at open; rollback and reset read as the snapshot's model; hydration
 * copies from the nearest layer too. */
static void
drained_cb (void *opaque, int res)
{
  *(int *) opaque = res;
  qb_loop_stop (loop);
}

static void
chain_held (void)
{
  int res = 1;
  vol_hold (vol, drained_cb, &res);
  qb_loop_run (loop);
  ck_assert_int_eq (res, 0);
}

static void
chain_snapshot (const char *snap, const char *dev)
{
  char path[128], err[512];
  struct backend_opts bo = { .direct = true };
  snprintf (path, sizeof path, "%s/%s", dir, dev);
  int fd = open (path, O_CREAT | O_RDWR, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (ftruncate (fd, VOL_SIZE + 1024 * 1024), 0);
  close (fd);
  chain_held ();
  int r = vol_snapshot (vol, path, snap, &bo, err, sizeof err);
  ck_assert_msg (r == 0, "snapshot %s: %s", snap, err);
  vol_resume (vol);
}

static void
chain_rollback (const char *snap, unsigned want_freed)
{
  char err[512], *freed[DSCOW_CHAIN_MAX];
  unsigned n;
  chain_held ();
  int r = vol_rollback (vol, snap, freed, &n, err, sizeof err);
  ck_assert_msg (r == 0, "rollback: %s", err);
  ck_assert_uint_eq (n, want_freed);
  for (unsigned i = 0; i < n; i++)
    free (freed[i]);
  vol_resume (vol);
}

static unsigned merge_max_pass; /* the highest pass merged_poll saw */

static void
merged_poll (void *data)
{
  struct vol_merge m;
  vol_merge_info (vol, &m);
  ck_assert_int_eq (m.error, 0);
  merge_max_pass = m.pass > merge_max_pass ? m.pass : merge_max_pass;
  if (!m.running)
    {
      qb_loop_stop (loop);
      return;
    }
  qb_loop_timer_handle t;
  qb_loop_timer_add (loop, QB_LOOP_LOW, 10000000, NULL, merged_poll, &t);
}

START_TEST (test_chain)
{
  static const char *const snaps[] = { "s1", "s2", "s3" };
  static const char *const devs[] = { "l1.img", "l2.img", "l3.img" };
  uint8_t *saved[3];
  struct vol_layer_info li[DSCOW_CHAIN_MAX];
  open_volume ("vchain", DSCOW_COMMIT_SYNC, true);
  for (int i = 0; i < 3; i++)
    {
      run_random (800);
      saved[i] = malloc (VOL_SIZE);
      memcpy (saved[i], model, VOL_SIZE);
      chain_snapshot (snaps[i], devs[i]);
      verify_whole ();
    }
  run_random (800);
  verify_whole ();
  ck_assert_uint_eq (vol_layers (vol, li, DSCOW_CHAIN_MAX), 4);
  for (int i = 0; i < 3; i++)
    {
      ck_assert_str_eq (li[i].name, snaps[i]);
      ck_assert_uint_gt (li[i].chunks, 0);
    }
  ck_assert_ptr_null (li[3].name);
  reopen_and_verify ("vchain", DSCOW_COMMIT_SYNC); /* found at open */
  open_volume ("vchain", DSCOW_COMMIT_SYNC, false);
  ck_assert_uint_eq (vol_layers (vol, li, DSCOW_CHAIN_MAX), 4);
  chain_rollback ("s2", 1); /* s3's layer empty, the top freed */
  memcpy (model, saved[1], VOL_SIZE);
  verify_whole ();
  ck_assert_uint_eq (vol_layers (vol, li, DSCOW_CHAIN_MAX), 3);
  run_random (500);
  chain_rollback (NULL, 0); /* reset: reads as s2 again */
  memcpy (model, saved[1], VOL_SIZE);
  verify_whole ();
  run_random (500);
  /* Merge the top into s2 while the clients run: nothing they read
   * changes, and what they write during the copy is copied again, by
   * passes while they still run (nothing is left for the held finish:
   * COWD_TEST_MERGE_FINAL_BYTES=0). */
  char err[512];
  struct vol_stats st0, st1;
  vol_get_stats (vol, &st0);
  setenv ("COWD_TEST_MERGE_FINAL_BYTES", "0", 1);
  ck_assert_int_eq (vol_merge_start (vol, err, sizeof err), 0);
  unsetenv ("COWD_TEST_MERGE_FINAL_BYTES");
  merge_max_pass = 0;
  qb_loop_timer_handle t;
  for (int i = 0; i < 3; i++)
    {
      struct vol_merge m;
      run_random (500);
      vol_merge_info (vol, &m); /* the pass while the clients run */
      merge_max_pass = m.pass > merge_max_pass ? m.pass : merge_max_pass;
    }
  vol_get_stats (vol, &st1);
  ck_assert_uint_gt (st1.writes, st0.writes);
  qb_loop_timer_add (loop, QB_LOOP_LOW, 0, NULL, merged_poll, &t);
  qb_loop_run (loop);
  ck_assert_uint_ge (merge_max_pass, 1);
  verify_whole ();
  ck_assert_uint_eq (vol_layers (vol, li, DSCOW_CHAIN_MAX), 2);
  ck_assert_str_eq (li[0].name, "s1");
  reopen_and_verify ("vchain", DSCOW_COMMIT_SYNC);
  open_volume ("vchain", DSCOW_COMMIT_SYNC, false);
  ck_assert_uint_eq (vol_layers (vol, li, DSCOW_CHAIN_MAX), 2);
  ck_assert_int_eq (vol_hydrate_start (vol, 0, err, sizeof err), 0);
  qb_loop_timer_add (loop, QB_LOOP_LOW, 0, NULL, hydrated_poll, &t);
  qb_loop_run (loop);
  verify_whole (); /* copied from s1 and the base */
  reopen_and_verify ("vchain", DSCOW_COMMIT_SYNC);
  for (int i = 0; i < 3; i++)
    free (saved[i]);
}
END_TEST

START_TEST (test_sync) { engine_policy ("vsync", DSCOW_COMMIT_SYNC); }
END_TEST
START_TEST (test_flush) { engine_policy ("vflush", DSCOW_COMMIT_FLUSH); }
END_TEST
START_TEST (test_none) { engine_policy ("vnone", DSCOW_COMMIT_NONE); }
END_TEST
/* A buffered CoW: under `sync` faults and bitmap blocks go around the
 * page cache while overwrites and read-modify-writes go through it. */
START_TEST (test_sync_buffered)
{
  buffered = true;
  engine_policy ("vsyncb", DSCOW_COMMIT_SYNC);
}
END_TEST
START_TEST (test_flush_buffered)
{
  buffered = true;
  engine_policy ("vflushb", DSCOW_COMMIT_FLUSH);
}
END_TEST

/* A CoW device that held a volume's data (every bitmap bit set, its
 * chunks written) reads as its base once formatted again: with flushes,
 * and without (create --from: the superblocks and the bitmap in one write
 * through the page cache), also with the largest bitmap of that one write
 * and one too big for it (sparse bases of 128 and 256 GiB at 16 KiB
 * chunks: bitmaps of 1 and 2 MiB). */
static void
format_over_old (const char *name, bool no_flush, uint64_t size, uint32_t chunk)
{
  char base[128], cow[128], err[512];
  snprintf (base, sizeof base, "%s/%s-base.img", dir, name);
  snprintf (cow, sizeof cow, "%s/%s-cow.img", dir, name);
  int fd = open (base, O_CREAT | O_RDWR, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (pwrite (fd, base_copy, 65536, 0), 65536);
  ck_assert_int_eq (ftruncate (fd, (off_t) size), 0);
  close (fd);
  /* The old volume: the superblocks blank (so no --force is needed),
   * everything after them 0xab for 8 MiB, past the bitmap and the first
   * chunks' data. */
  size_t old = 8u * 1024 * 1024;
  uint8_t *junk = malloc (old);
  memset (junk, 0xab, old);
  fd = open (cow, O_CREAT | O_RDWR, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (ftruncate (fd, (off_t) (size + size / 8)), 0);
  ck_assert_int_eq (pwrite (fd, junk, old - 8192, 8192),
                    (ssize_t) (old - 8192));
  close (fd);
  free (junk);
  struct vol_params p = { .name = name,
                          .base_uri = base,
                          .cow_uri = cow,
                          .chunk_size = chunk,
                          .commit = DSCOW_COMMIT_SYNC,
                          .no_flush = no_flush };
  struct backend_opts bo = { .direct = true };
  int r = vol_format (&p, &bo, err, sizeof err);
  ck_assert_msg (r == 0, "format: %s", err);
  if (no_flush)
    {
      fd = open (cow, O_RDONLY);
      ck_assert_int_eq (syncfs (fd), 0); /* what create --from does */
      close (fd);
    }
  p.no_flush = false;
  r = vol_open (&p, &bo, &vol, err, sizeof err);
  ck_assert_msg (r == 0, "open: %s", err);
  ck_assert_int_eq (vol_takeover (vol, 1, 1, 0, err, sizeof err), 0);
  uint8_t *buf;
  ck_assert_int_eq (posix_memalign ((void **) &buf, 4096, 65536), 0);
  memset (buf, 0, 65536);
  int res = 1;
  ck_assert_int_eq (vol_read (vol, buf, 0, 65536, verify_cb, &res), 0);
  qb_loop_run (loop);
  ck_assert_int_eq (res, 0);
  ck_assert_msg (memcmp (buf, base_copy, 65536) == 0,
                 "%s: the old volume's data shows through the new one "
                 "(first byte %#x)",
                 name, buf[0]);
  res = 1;
  ck_assert_int_eq (vol_read (vol, buf, size - 65536, 65536, verify_cb, &res),
                    0);
  qb_loop_run (loop);
  ck_assert_int_eq (res, 0);
  for (size_t i = 0; i < 65536; i++)
    ck_assert_msg (buf[i] == 0, "%s: byte %zu at the end reads %#x", name, i,
                   buf[i]);
  free (buf);
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
}

START_TEST (test_format_over_old)
{
  format_over_old ("fo-flush", false, VOL_SIZE, CHUNK);
  format_over_old ("fo-one", true, VOL_SIZE, CHUNK);
  format_over_old ("fo-big", true, 128ull << 30, 16384); /* 1 MiB bitmap */
  format_over_old ("fo-bigger", true, 256ull << 30, 16384);
}
END_TEST

START_TEST (test_out_of_range)
{
  open_volume ("vr", DSCOW_COMMIT_SYNC, true);
  char buf[4096] __attribute__ ((aligned (4096)));
  ck_assert_int_eq (vol_read (vol, buf, VOL_SIZE, 4096, NULL, NULL), -EINVAL);
  ck_assert_int_eq (vol_write (vol, buf, VOL_SIZE - 512, 4096, 0, NULL, NULL),
                    -EINVAL);
  ck_assert_int_eq (vol_read (vol, buf, 0, 0, NULL, NULL), -EINVAL);
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
}
END_TEST

/* backend_key: one device, however named, has one key. */
START_TEST (test_backend_key)
{
  char a[320], b[320], kdir[] = "/tmp/check-key.XXXXXX", f[64], g[64], l[64],
                       h[64];
  ck_assert_ptr_nonnull (mkdtemp (kdir));
  snprintf (f, sizeof f, "%s/f", kdir);
  snprintf (g, sizeof g, "%s/g", kdir);
  snprintf (l, sizeof l, "%s/l", kdir);
  snprintf (h, sizeof h, "%s/h", kdir);
  close (open (f, O_CREAT | O_WRONLY, 0600));
  close (open (g, O_CREAT | O_WRONLY, 0600));
  ck_assert_int_eq (symlink ("f", l), 0);
  ck_assert_int_eq (link (f, h), 0);
  backend_key (f, a, sizeof a);
  ck_assert_int_eq (strncmp (a, "file:", 5), 0);
  backend_key (l, b, sizeof b);
  ck_assert_str_eq (a, b);
  backend_key (h, b, sizeof b);
  ck_assert_str_eq (a, b);
  backend_key (g, b, sizeof b);
  ck_assert_str_ne (a, b);
  backend_key ("/nonexistent/x", b, sizeof b);
  ck_assert_str_eq (b, "path:/nonexistent/x");
#ifdef HAVE_LIBISCSI
  backend_key ("iscsi://10.0.0.5/iqn.2024-01.x:y/1", a, sizeof a);
  ck_assert_str_eq (a, "iscsi:iscsi://10.0.0.5:3260/iqn.2024-01.x:y/1");
  backend_key ("iscsi://u%secret@10.0.0.5:3260/iqn.2024-01.x:y/1", b, sizeof b);
  ck_assert_str_eq (a, b);
#endif
  unlink (f), unlink (g), unlink (l), unlink (h), rmdir (kdir);
}
END_TEST

/* --- the lease gate and the fenced state (issue 15) --- */

static uint64_t lease_deadline;
static int lease_res[4];

static uint64_t
lease_fn (void *ud)
{
  return lease_deadline;
}

static void
lease_done (void *opaque, int res)
{
  *(int *) opaque = res;
}

static void
stop_cb (void *data)
{
  qb_loop_stop (loop);
}

/* Run the loop for ms milliseconds. */
static void
run_for (unsigned ms)
{
  qb_loop_timer_handle t;
  qb_loop_timer_add (loop, QB_LOOP_LOW, (uint64_t) ms * 1000000, NULL, stop_cb,
                     &t);
  qb_loop_run (loop);
}

START_TEST (test_lease_gate)
{
  static char buf[3][4096] __attribute__ ((aligned (4096)));
  char err[256];
  open_volume ("vl", DSCOW_COMMIT_SYNC, true);
  lease_deadline = UINT64_MAX;
  vol_set_lease (vol, lease_fn, NULL);
  memset (buf[0], 0xa1, 4096);
  lease_res[0] = 1;
  ck_assert_int_eq (
      vol_write (vol, buf[0], 0, 4096, 0, lease_done, &lease_res[0]), 0);
  run_for (200);
  ck_assert_int_eq (lease_res[0], 0);
  /* Past the lease: nothing starts, nothing is answered. */
  lease_deadline = 0;
  ck_assert (!vol_serving (vol));
  lease_res[1] = lease_res[2] = 1;
  ck_assert_int_eq (
      vol_write (vol, buf[1], 2 * CHUNK, 4096, 0, lease_done, &lease_res[1]),
      0);
  ck_assert_int_eq (vol_read (vol, buf[2], 0, 4096, lease_done, &lease_res[2]),
                    0);
  run_for (200);
  ck_assert_int_eq (lease_res[1], 1);
  ck_assert_int_eq (lease_res[2], 1);
  /* Confirmed: both go out. */
  lease_deadline = UINT64_MAX;
  vol_confirm (vol);
  run_for (200);
  ck_assert_int_eq (lease_res[1], 0);
  ck_assert_int_eq (lease_res[2], 0);
  ck_assert_int_eq (memcmp (buf[2], buf[0], 4096), 0);
  /* A write in flight as the lease runs out is parked, then failed by
   * the fence. */
  lease_res[3] = 1;
  ck_assert_int_eq (
      vol_write (vol, buf[1], 4 * CHUNK, 4096, 0, lease_done, &lease_res[3]),
      0);
  lease_deadline = 0;
  run_for (200);
  ck_assert_int_eq (lease_res[3], 1);
  vol_fence (vol);
  run_for (50);
  ck_assert_int_eq (lease_res[3], -EIO);
  /* Fenced is terminal; reads are refused. */
  lease_deadline = UINT64_MAX;
  vol_set_state (vol, VOL_STATE_ACTIVE);
  ck_assert_int_eq (vol_get_state (vol), VOL_STATE_FENCED);
  ck_assert_int_eq (vol_takeover (vol, 2, 1, 0, err, sizeof err), -1);
  ck_assert_str_eq (err, "volume vl: this host was fenced; it serves the "
                         "volume again only after cowd is restarted");
  lease_res[2] = 1;
  ck_assert_int_eq (vol_read (vol, buf[2], 0, 4096, lease_done, &lease_res[2]),
                    0);
  run_for (50);
  ck_assert_int_eq (lease_res[2], -EIO);
  ck_assert_int_eq (vol_mark_clean (vol), -EACCES);
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
}
END_TEST

/* A fenced volume with a bit not yet committed (policy flush) closes at
 * once without writing: the superblock stays dirty, the bit uncommitted. */
START_TEST (test_fenced_close)
{
  static char buf[4096] __attribute__ ((aligned (4096)));
  open_volume ("vf", DSCOW_COMMIT_FLUSH, true);
  memset (buf, 0x5c, sizeof buf);
  lease_res[0] = 1;
  ck_assert_int_eq (
      vol_write (vol, buf, 3 * CHUNK, 4096, 0, lease_done, &lease_res[0]), 0);
  run_for (200);
  ck_assert_int_eq (lease_res[0], 0);
  ck_assert_uint_eq (vol_cow_chunks (vol), 1);
  vol_fence (vol);
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
  open_volume ("vf", DSCOW_COMMIT_FLUSH, false);
  ck_assert_uint_eq (vol_cow_chunks (vol), 0);
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
}
END_TEST

/* cowd_io_waiting: a descriptor added through cowd_io_poll_add counts
 * while it is ready for the events asked, not once those change or it is
 * deleted; the file backend's completions count (they are what an NBD
 * read waits for).  A look that found nothing stands for 50 us, unless
 * what is watched changes.  Nothing here runs the loop until the end. */
static int
io_never (int32_t fd, int32_t revents, void *data)
{
  return 0;
}

START_TEST (test_io_waiting)
{
  static char buf[4096] __attribute__ ((aligned (4096)));
  int sv[2];
  char c;
  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ck_assert_int_eq (cowd_io_poll_add (sv[0], POLLIN, NULL, io_never), 0);
  ck_assert (!cowd_io_waiting ());
  uint64_t yields = cowd_io_yields ();
  ck_assert_int_eq (write (sv[1], "x", 1), 1);
  usleep (1000); /* a look that found nothing stands for 50 us */
  ck_assert (cowd_io_waiting ());
  ck_assert_uint_eq (cowd_io_yields (), yields + 1);
  ck_assert_int_eq (read (sv[0], &c, 1), 1);
  ck_assert (!cowd_io_waiting ());
  ck_assert_int_eq (cowd_io_poll_mod (sv[0], POLLOUT, NULL, io_never), 0);
  ck_assert (cowd_io_waiting ()); /* a reply could go out */
  ck_assert_int_eq (cowd_io_poll_mod (sv[0], POLLIN, NULL, io_never), 0);
  ck_assert (!cowd_io_waiting ());
  ck_assert_int_eq (cowd_io_poll_del (sv[0]), 0);
  ck_assert_int_eq (write (sv[1], "x", 1), 1);
  ck_assert (!cowd_io_waiting ());
  /* Something to send counts until it is deleted, as well as modded. */
  ck_assert_int_eq (cowd_io_poll_add (sv[0], POLLIN | POLLOUT, NULL, io_never),
                    0);
  ck_assert (cowd_io_waiting ());
  ck_assert_int_eq (read (sv[0], &c, 1), 1);
  ck_assert (cowd_io_waiting ());
  ck_assert_int_eq (cowd_io_poll_del (sv[0]), 0);
  ck_assert (!cowd_io_waiting ());
  close (sv[0]);
  close (sv[1]);

  open_volume ("vw", DSCOW_COMMIT_SYNC, true);
  lease_res[0] = 1;
  ck_assert_int_eq (vol_read (vol, buf, 0, 4096, lease_done, &lease_res[0]), 0);
  bool waiting = false;
  for (int i = 0; i < 2000 && !waiting; i++)
    if (!(waiting = cowd_io_waiting ()))
      usleep (1000);
  ck_assert (waiting);
  ck_assert_int_eq (lease_res[0], 1); /* not answered before the loop runs */
  run_for (50);
  ck_assert_int_eq (lease_res[0], 0);
  ck_assert (!cowd_io_waiting ());
  vol_close (vol, closed, NULL);
  qb_loop_run (loop);
}
END_TEST

static Suite *
engine_suite (void)
{
  Suite *s = suite_create ("engine");
  TCase *tc = tcase_create ("random");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_sync);
  tcase_add_test (tc, test_flush);
  tcase_add_test (tc, test_none);
  tcase_add_test (tc, test_sync_buffered);
  tcase_add_test (tc, test_flush_buffered);
  tcase_add_test (tc, test_out_of_range);
  tcase_add_test (tc, test_format_over_old);
  tcase_add_test (tc, test_backend_key);
  tcase_add_test (tc, test_lease_gate);
  tcase_add_test (tc, test_fenced_close);
  tcase_add_test (tc, test_io_waiting);
  tcase_add_test (tc, test_hydrate);
  tcase_add_test (tc, test_hydrate_commits);
  tcase_add_test (tc, test_chain);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (engine_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
