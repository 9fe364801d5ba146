/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_store.c: cowd's definitions store (node/cowd/store.c) on a real
 * SQLite file: put, replace, delete, reopen; a transaction is all or
 * nothing when the process dies in the middle of it (a child killed with
 * SIGKILL before and after its commit); the count of rows (what cowd
 * sizes its indexes by before loading them); a lazy commit survives the
 * process's death too; and the import of an old volumes.conf is tested by
 * tests/functional/store-import.sh against cowd itself. */
#include <config.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

static char dir[64];

static void
setup (void)
{
  strcpy (dir, "/tmp/check_store.XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (dir));
}

static void
teardown (void)
{
  char cmd[128];
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq (system (cmd), 0);
}

static struct store *
open_store (void)
{
  struct store *s;
  char err[256] = "";
  ck_assert_msg (store_open (dir, &s, err, sizeof err) == 0, "%s", err);
  return s;
}

static struct store_def
def (const char *name, const char *cow)
{
  return (struct store_def){ .name = name,
                             .base = "/srv/base.img",
                             .cow = cow,
                             .commit = "flush",
                             .chunk_size = 65536,
                             .exclusive = true };
}

/* The rows, as "name cow commit chunk flags;" in name order. */
struct dump
{
  char s[65536];
  int n;
};

static int
dump_row (void *ud, const struct store_def *d)
{
  struct dump *dp = ud;
  size_t l = strlen (dp->s);
  snprintf (dp->s + l, sizeof dp->s - l, "%s %s %s%s%s %s %u %d%d%d;", d->name,
            d->base, d->cow, d->cow_ident[0] ? " " : "", d->cow_ident,
            d->commit, d->chunk_size, d->exclusive, d->buffered, d->attached);
  dp->n++;
  return 0;
}

static struct dump
dump (struct store *s)
{
  struct dump d = { "", 0 };
  ck_assert_int_eq (store_foreach (s, dump_row, &d), 0);
  return d;
}

START_TEST (test_put_delete_reopen)
{
  struct store *s = open_store ();
  ck_assert_int_eq (store_count (s), 0);
  struct store_def a = def ("vm2", "/cow/2"), b = def ("vm1", "/cow/1");
  ck_assert_int_eq (store_put (s, &a), 0);
  ck_assert_int_eq (store_put (s, &b), 0);
  b.attached = true;
  b.commit = "sync";
  ck_assert_int_eq (store_put_lazy (s, &b), 0); /* replaces */
  ck_assert_int_eq (store_count (s), 2);
  ck_assert_str_eq (dump (s).s, "vm1 /srv/base.img /cow/1 sync 65536 101;"
                                "vm2 /srv/base.img /cow/2 flush 65536 100;");
  ck_assert_int_eq (store_delete (s, "vm2"), 0);
  ck_assert_int_eq (store_delete (s, "nothing"), 0);
  store_close (s);
  s = open_store ();
  ck_assert_str_eq (dump (s).s, "vm1 /srv/base.img /cow/1 sync 65536 101;");
  ck_assert_int_eq (store_count (s), 1);
  store_close (s);
}
END_TEST

START_TEST (test_batch_rollback)
{
  struct store *s = open_store ();
  ck_assert_int_eq (store_begin (s, STORE_LAZY), 0);
  char name[16];
  for (int i = 0; i < 1000; i++)
    {
      snprintf (name, sizeof name, "vm%04d", i);
      struct store_def d = def (name, name);
      ck_assert_int_eq (store_put (s, &d), 0);
    }
  ck_assert_uint_eq (store_txn_rows (s), 1000);
  store_rollback (s);
  ck_assert_uint_eq (store_txn_rows (s), 0);
  ck_assert_int_eq (dump (s).n, 0);
  ck_assert_int_eq (store_count (s), 0);
  ck_assert_int_eq (store_begin (s, STORE_DURABLE), 0);
  ck_assert_uint_eq (store_txn_rows (s), 0);
  for (int i = 0; i < 1000; i++)
    {
      snprintf (name, sizeof name, "vm%04d", i);
      struct store_def d = def (name, name);
      ck_assert_int_eq (store_put (s, &d), 0);
    }
  ck_assert_int_eq (store_delete (s, "vm0000"), 0);
  ck_assert_uint_eq (store_txn_rows (s), 1001);
  ck_assert_int_eq (store_put (s, &(struct store_def){ 0 }), -1);
  ck_assert_uint_eq (store_txn_rows (s), 1001);
  ck_assert_int_eq (store_commit (s), 0);
  ck_assert_uint_eq (store_txn_rows (s), 0);
  ck_assert_int_eq (dump (s).n, 999);
  ck_assert_int_eq (store_count (s), 999);
  store_close (s);
}
END_TEST

/* A child writes `committed` rows in one transaction and commits it, then
 * `pending` more in a second transaction, and is killed before that one
 * commits: it stopped in the middle of a transaction, as a crashing cowd
 * would. */
static void
child_dies (int committed, int pending, enum store_sync sync)
{
  pid_t pid = fork ();
  ck_assert_int_ge (pid, 0);
  if (pid == 0)
    {
      struct store *s;
      char err[256], name[16];
      if (store_open (dir, &s, err, sizeof err) < 0)
        _exit (2);
      store_begin (s, sync);
      for (int i = 0; i < committed; i++)
        {
          snprintf (name, sizeof name, "c%05d", i);
          struct store_def d = def (name, name);
          store_put (s, &d);
        }
      if (store_commit (s) < 0)
        _exit (3);
      store_begin (s, sync);
      for (int i = 0; i < pending; i++)
        {
          snprintf (name, sizeof name, "p%05d", i);
          struct store_def d = def (name, name);
          store_put (s, &d);
        }
      raise (SIGKILL);
      _exit (4);
    }
  int st;
  ck_assert_int_eq (waitpid (pid, &st, 0), pid);
  ck_assert (WIFSIGNALED (st) && WTERMSIG (st) == SIGKILL);
}

START_TEST (test_killed_mid_transaction)
{
  child_dies (500, 5000, STORE_DURABLE);
  struct store *s = open_store ();
  struct dump d = dump (s);
  ck_assert_int_eq (d.n, 500);
  ck_assert_ptr_null (strstr (d.s, "p0"));
  store_close (s);
  /* Lazy commits are in the log too: only a power cut may lose them. */
  child_dies (800, 100, STORE_LAZY);
  s = open_store ();
  ck_assert_int_eq (dump (s).n, 800);
  store_close (s);
}
END_TEST

START_TEST (test_schema_version)
{
  struct store *s = open_store ();
  store_close (s);
  char cmd[256], err[256] = "";
  snprintf (cmd, sizeof cmd, "sqlite3 %s/%s 'PRAGMA user_version = 7'", dir,
            STORE_FILE);
  if (system (cmd) != 0)
    return; /* no sqlite3 CLI: nothing to check */
  ck_assert_int_eq (store_open (dir, &s, err, sizeof err), -1);
  ck_assert_str_eq (err, "the definitions store has schema version 7; this "
                         "cowd knows version 2");
}
END_TEST

/* A store of schema version 1 (no cow_ident) opens: the column is added,
 * empty, and the rows stay; an identity is then stored and read back. */
START_TEST (test_schema_upgrade)
{
  char cmd[1024];
  snprintf (cmd, sizeof cmd,
            "sqlite3 %s/%s \"CREATE TABLE volumes (name TEXT "
            "PRIMARY KEY NOT NULL, base TEXT NOT NULL, cow TEXT NOT NULL, "
            "chunk_size INTEGER NOT NULL, commit_policy TEXT NOT NULL, "
            "exclusive INTEGER NOT NULL, buffered INTEGER NOT NULL, attached "
            "INTEGER NOT NULL) WITHOUT ROWID; INSERT INTO volumes VALUES "
            "('old', '/srv/base.img', '/cow/0', 65536, 'sync', 0, 0, 1); "
            "PRAGMA user_version = 1\"",
            dir, STORE_FILE);
  if (system (cmd) != 0)
    return; /* no sqlite3 CLI: nothing to check */
  struct store *s = open_store ();
  ck_assert_str_eq (dump (s).s, "old /srv/base.img /cow/0 sync 65536 001;");
  struct store_def a = def ("vm1", "iscsi://t:3260/iqn.x/2");
  a.cow_ident = "naa.60000000000000000e00000000010002";
  ck_assert_int_eq (store_put (s, &a), 0);
  store_close (s);
  s = open_store ();
  ck_assert_str_eq (dump (s).s,
                    "old /srv/base.img /cow/0 sync 65536 001;"
                    "vm1 /srv/base.img iscsi://t:3260/iqn.x/2 "
                    "naa.60000000000000000e00000000010002 flush 65536 100;");
  store_close (s);
}
END_TEST

/* The size of the store's file with suffix ("-wal": its write-ahead log),
 * in bytes (0 if none). */
static long
file_bytes (const char *suffix)
{
  char path[128];
  struct stat st;
  snprintf (path, sizeof path, "%s/%s%s", dir, STORE_FILE, suffix);
  return stat (path, &st) == 0 ? (long) st.st_size : 0;
}

static long
wal_bytes (void)
{
  return file_bytes ("-wal");
}

/* No checkpoint inside a commit: the log grows past SQLite's automatic
 * 1,000 pages until the owner calls store_checkpoint when it is due;
 * after one the log is written from its start again; nothing is lost. */
START_TEST (test_checkpoint)
{
  struct store *s = open_store ();
  char name[32], cow[64];
  int n = 0;
  ck_assert (!store_checkpoint_due (s));
  while (!store_checkpoint_due (s))
    {
      ck_assert_int_lt (n, 20000);
      snprintf (name, sizeof name, "vm%05d", n);
      snprintf (cow, sizeof cow, "/srv/cow/%05d", n);
      struct store_def d = def (name, cow);
      ck_assert_int_eq (store_put_lazy (s, &d), 0);
      n++;
    }
  /* SQLite's own checkpoint would have started the log again at 1,000
   * pages (of 4 KiB); the log is past them now, and grows on. */
  ck_assert_int_ge (wal_bytes (), (long) STORE_CHECKPOINT_PAGES * 4096);
  long before = wal_bytes ();
  snprintf (name, sizeof name, "vm%05d", n);
  struct store_def d = def (name, "/srv/cow/next");
  ck_assert_int_eq (store_put_lazy (s, &d), 0);
  n++;
  ck_assert_int_gt (wal_bytes (), before);
  ck_assert (store_checkpoint_due (s));
  /* Not inside a transaction; done at once outside one. */
  ck_assert_int_eq (store_begin (s, STORE_LAZY), 0);
  ck_assert_int_eq (store_checkpoint (s), 0);
  ck_assert (store_checkpoint_due (s));
  ck_assert_int_eq (store_commit (s), 0);
  ck_assert_int_eq (store_checkpoint (s), 0);
  ck_assert (!store_checkpoint_due (s));
  before = wal_bytes ();
  for (int i = 0; i < 10; i++, n++)
    {
      snprintf (name, sizeof name, "vm%05d", n);
      struct store_def e = def (name, "/srv/cow/again");
      ck_assert_int_eq (store_put_lazy (s, &e), 0);
    }
  ck_assert_int_eq (wal_bytes (), before); /* from its start again */
  ck_assert (!store_checkpoint_due (s));
  ck_assert_int_eq (store_count (s), n);

  /* The store's own thread: started, it returns at once and the owner
   * writes on meanwhile (lazy and durable); once it is done, the log is
   * written from its start again, and nothing is lost. */
  while (!store_checkpoint_due (s))
    {
      snprintf (name, sizeof name, "vm%05d", n++);
      struct store_def e = def (name, "/srv/cow/third");
      ck_assert_int_eq (store_put_lazy (s, &e), 0);
    }
  ck_assert_uint_eq (store_checkpoints (s), 0);
  long db = file_bytes ("");
  ck_assert_int_eq (store_checkpoint_start (s), 0);
  ck_assert (!store_checkpoint_due (s)); /* until the next commit says */
  for (int i = 0; i < 50; i++, n++)
    {
      snprintf (name, sizeof name, "vm%05d", n);
      struct store_def e = def (name, "/srv/cow/during");
      ck_assert_int_eq (i % 2 ? store_put (s, &e) : store_put_lazy (s, &e), 0);
    }
  store_checkpoint_wait (s);
  ck_assert_uint_eq (store_checkpoints (s), 1);
  /* The rows of the log are in the database now: it grew. */
  ck_assert_int_gt (file_bytes (""), db);
  /* What was written during it waits for the next one. */
  ck_assert_int_eq (store_checkpoint_start (s), 0);
  store_checkpoint_wait (s);
  ck_assert_uint_eq (store_checkpoints (s), 2);
  before = wal_bytes ();
  for (int i = 0; i < 10; i++, n++)
    {
      snprintf (name, sizeof name, "vm%05d", n);
      struct store_def e = def (name, "/srv/cow/after");
      ck_assert_int_eq (store_put_lazy (s, &e), 0);
    }
  ck_assert_int_eq (wal_bytes (), before); /* from its start again */
  ck_assert_int_eq (store_count (s), n);
  store_close (s);
  s = open_store ();
  ck_assert_int_eq (store_count (s), n);
  ck_assert_int_eq (dump (s).n, n);
  store_close (s);
}
END_TEST

int
main (void)
{
  Suite *su = suite_create ("store");
  TCase *tc = tcase_create ("store");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_put_delete_reopen);
  tcase_add_test (tc, test_batch_rollback);
  tcase_add_test (tc, test_killed_mid_transaction);
  tcase_add_test (tc, test_schema_version);
  tcase_add_test (tc, test_schema_upgrade);
  tcase_add_test (tc, test_checkpoint);
  suite_add_tcase (su, tc);
  SRunner *sr = srunner_create (su);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
