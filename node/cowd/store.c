/* SPDX-License-Identifier: GPL-2.0-or-later */
/* store.c: the volume definitions on disk, one row per volume.
 *
 * Why SQLite: it gives atomic, crash-safe updates of one record at the
 * cost of one log append and one fsync, a format every administrator can
 * read (sqlite3 STATE_DIR/volumes.db .dump), and a library every
 * distribution ships.  LMDB would do the same with less code under it but
 * maps the whole file and needs its size chosen up front; an append-only
 * journal of our own would need its own compaction, recovery and tests for
 * exactly what SQLite has proven for twenty years.  The old volumes.conf,
 * rewritten whole with two fsyncs per definition, cost O(N) per definition.
 *
 *   CREATE TABLE volumes (name TEXT PRIMARY KEY, base TEXT, cow TEXT,
 *                         chunk_size INTEGER, commit_policy TEXT,
 *                         exclusive INTEGER, buffered INTEGER,
 *                         attached INTEGER,
 *                         cow_ident TEXT)    -- WITHOUT ROWID
 *   PRAGMA user_version = 2                  -- this schema
 *
 * cow_ident is the CoW LUN's VPD identity, or '' (version 2; a store of
 * version 1 gets the column, empty, when this cowd opens it).
 *
 * Journal: WAL.  A commit appends the changed pages to volumes.db-wal;
 * readers never block it; a checkpoint copies the log into the database
 * once it holds STORE_CHECKPOINT_PAGES, not inside the commit that filled
 * it but on a thread of the store's own with a connection of its own
 * (store_checkpoint_start): WAL lets one connection checkpoint while
 * another writes, and a checkpoint's writes and fsyncs took 17-25 ms each
 * on cowd's loop (bench/scale-join 100,000, a host with an empty state
 * directory: five in its first two seconds).
 * Durability: synchronous=FULL for DURABLE transactions (the log is
 * fsynced before the commit returns: `cowctl create` answers only after
 * that, so a power cut loses no acknowledged definition), NORMAL for LAZY
 * ones (written, not fsynced: a power cut may lose the last of them, but
 * WAL never tears a transaction, and the database opens consistent).
 * A crash of cowd itself (kill -9) loses nothing committed in either mode:
 * the log is in the kernel's page cache.
 *
 * Owned by cowd's main thread; the checkpointer's thread touches nothing
 * but its own connection and the fields under ck_mu.
 */
#include <config.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowlog.h"
#include "cowmutex.h"
#include "cowthread.h"
#include <sqlite3.h>

#include "store.h"

#define STORE_SCHEMA_VERSION 2

enum
{
  ST_PUT,
  ST_DEL,
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_ALL,
  ST_COUNT,
  ST_FULL,
  ST_NORMAL,
  ST__N
};

static const char *const store_sql[ST__N] = {
  [ST_PUT] = "INSERT OR REPLACE INTO volumes VALUES (?,?,?,?,?,?,?,?,?)",
  [ST_DEL] = "DELETE FROM volumes WHERE name = ?",
  [ST_BEGIN] = "BEGIN IMMEDIATE",
  [ST_COMMIT] = "COMMIT",
  [ST_ROLLBACK] = "ROLLBACK",
  [ST_ALL] = "SELECT name, base, cow, chunk_size, commit_policy, exclusive,"
             " buffered, attached, cow_ident FROM volumes ORDER BY name",
  [ST_COUNT] = "SELECT count(*) FROM volumes",
  [ST_FULL] = "PRAGMA synchronous = FULL",
  [ST_NORMAL] = "PRAGMA synchronous = NORMAL",
};

struct store
{
  sqlite3 *db;
  sqlite3_stmt *st[ST__N];
  bool in_txn;
  unsigned txn_rows; /* written in the open transaction (store_txn_rows) */
  enum store_sync sync;
  int wal_pages; /* in the log after the last commit */
  char *path;
  int wal_fd; /* the log, opened by store_log_fd; -1 until then */
  /* The checkpointer, started at the first store_checkpoint_start. */
  pthread_t ck_thread;
  sqlite3 *ck_db;
  pthread_mutex_t ck_mu;
  pthread_cond_t ck_cv;
  bool ck_wanted, ck_busy, ck_quit;
  int ck_rc;        /* the last one's result, SQLITE_OK when reported */
  unsigned ck_done; /* how many ran */
  char ck_why[200]; /* its message, when ck_rc is not SQLITE_OK */
};

static int
store_fail (struct store *s, const char *what)
{
  qb_log (LOG_ERR, "cowd: the definitions store: %s failed: %s", what,
          sqlite3_errmsg (s->db));
  return -1;
}

/* Run a prepared statement that returns no rows. */
static int
store_step (struct store *s, int which)
{
  sqlite3_stmt *st = s->st[which];
  int rc = sqlite3_step (st);
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    return store_fail (s, store_sql[which]);
  return 0;
}

static int
store_schema (struct store *s, char *err, size_t errlen)
{
  static const char *setup
      = "PRAGMA journal_mode = WAL;"
        "PRAGMA synchronous = FULL;"
        "CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY NOT NULL,"
        " base TEXT NOT NULL, cow TEXT NOT NULL, chunk_size INTEGER NOT NULL,"
        " commit_policy TEXT NOT NULL, exclusive INTEGER NOT NULL,"
        " buffered INTEGER NOT NULL, attached INTEGER NOT NULL,"
        " cow_ident TEXT NOT NULL DEFAULT '') WITHOUT ROWID;";
  char *msg = NULL;
  sqlite3_stmt *v = NULL;
  int version = -1;
  if (sqlite3_exec (s->db, setup, NULL, NULL, &msg) != SQLITE_OK
      || sqlite3_prepare_v2 (s->db, "PRAGMA user_version", -1, &v, NULL)
             != SQLITE_OK)
    goto out;
  if (sqlite3_step (v) == SQLITE_ROW)
    version = sqlite3_column_int (v, 0);
  sqlite3_finalize (v);
  /* 0: created just now, with every column; 1: no cow_ident yet. */
  if (version == 1
      && sqlite3_exec (s->db,
                       "ALTER TABLE volumes ADD COLUMN "
                       "cow_ident TEXT NOT NULL DEFAULT ''",
                       NULL, NULL, &msg)
             == SQLITE_OK)
    version = 0;
  if (version == 0
      && sqlite3_exec (s->db, "PRAGMA user_version = 2", NULL, NULL, &msg)
             == SQLITE_OK)
    version = STORE_SCHEMA_VERSION;
  if (version != STORE_SCHEMA_VERSION)
    {
      snprintf (err, errlen,
                "the definitions store has schema version %d; "
                "this cowd knows version %d",
                version, STORE_SCHEMA_VERSION);
      sqlite3_free (msg);
      return -1;
    }
out:
  if (msg || version < 0)
    {
      snprintf (err, errlen, "cannot set up the definitions store: %s",
                msg ? msg : sqlite3_errmsg (s->db));
      sqlite3_free (msg);
      return -1;
    }
  return 0;
}

/* After each commit (it replaces SQLite's automatic checkpoints). */
static int
store_wal_hook (void *ud, sqlite3 *db, const char *name, int pages)
{
  (void) db;
  (void) name;
  ((struct store *) ud)->wal_pages = pages;
  return SQLITE_OK;
}

bool
store_checkpoint_due (const struct store *s)
{
  return s->wal_pages >= STORE_CHECKPOINT_PAGES;
}

int
store_checkpoint (struct store *s)
{
  int log = 0, done = 0;
  if (s->in_txn)
    return 0; /* after its commit, which says so again */
  int rc = sqlite3_wal_checkpoint_v2 (s->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                      &log, &done);
  if (rc != SQLITE_OK)
    return store_fail (s, "the checkpoint of its log");
  /* The next commit starts the log again from its beginning. */
  s->wal_pages = log > done ? log - done : 0;
  return 0;
}

static void *
store_ck_run (void *arg)
{
  struct store *s = arg;
  pthread_mutex_lock (&s->ck_mu);
  for (;;)
    {
      while (!s->ck_wanted && !s->ck_quit)
        pthread_cond_wait (&s->ck_cv, &s->ck_mu);
      if (s->ck_quit)
        break;
      s->ck_wanted = false;
      s->ck_busy = true;
      pthread_mutex_unlock (&s->ck_mu);
      int rc = sqlite3_wal_checkpoint_v2 (
          s->ck_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
      pthread_mutex_lock (&s->ck_mu);
      if (rc != SQLITE_OK)
        {
          s->ck_rc = rc;
          snprintf (s->ck_why, sizeof s->ck_why, "%s",
                    sqlite3_errmsg (s->ck_db));
        }
      s->ck_busy = false;
      s->ck_done++;
      pthread_cond_broadcast (&s->ck_cv);
    }
  pthread_mutex_unlock (&s->ck_mu);
  return NULL;
}

/* The checkpointer's connection and thread; 0 or -1 (logged). */
static int
store_ck_start (struct store *s)
{
  int rc = sqlite3_open_v2 (s->path, &s->ck_db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    {
      qb_log (LOG_ERR,
              "cowd: the definitions store: cannot open %s for its "
              "checkpoints: %s",
              s->path,
              s->ck_db ? sqlite3_errmsg (s->ck_db) : sqlite3_errstr (rc));
      sqlite3_close (s->ck_db);
      s->ck_db = NULL;
      return -1;
    }
  /* Its fsyncs are the point: it is the log's only checkpointer. */
  sqlite3_exec (s->ck_db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
  /* Signals stay with the thread that started it (cowd's loop takes
   * SIGTERM and SIGINT): the new thread blocks them all. */
  sigset_t all, old;
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  int r = cow_thread_create (&s->ck_thread, false, store_ck_run, s);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (r != 0)
    {
      qb_log (LOG_ERR, "cowd: the definitions store: cannot start its "
                       "checkpoint thread");
      sqlite3_close (s->ck_db);
      s->ck_db = NULL;
      return -1;
    }
  return 0;
}

int
store_checkpoint_start (struct store *s)
{
  if (!s->ck_db && store_ck_start (s) < 0)
    return store_checkpoint (s); /* on this thread, then */
  pthread_mutex_lock (&s->ck_mu);
  int rc = s->ck_rc;
  s->ck_rc = SQLITE_OK;
  if (rc != SQLITE_OK)
    qb_log (LOG_ERR,
            "cowd: the definitions store: the checkpoint of its log "
            "failed: %s",
            s->ck_why);
  s->ck_wanted = true;
  pthread_cond_signal (&s->ck_cv);
  pthread_mutex_unlock (&s->ck_mu);
  /* The log's count comes again with the next commit. */
  s->wal_pages = 0;
  return rc == SQLITE_OK ? 0 : -1;
}

void
store_checkpoint_wait (struct store *s)
{
  if (!s->ck_db)
    return;
  pthread_mutex_lock (&s->ck_mu);
  while (s->ck_wanted || s->ck_busy)
    pthread_cond_wait (&s->ck_cv, &s->ck_mu);
  pthread_mutex_unlock (&s->ck_mu);
}

unsigned
store_checkpoints (struct store *s)
{
  pthread_mutex_lock (&s->ck_mu);
  unsigned n = s->ck_done;
  pthread_mutex_unlock (&s->ck_mu);
  return n;
}

int
store_open (const char *dir, struct store **out, char *err, size_t errlen)
{
  struct store *s = calloc (1, sizeof *s);
  char *path = NULL;
  if (!s || asprintf (&path, "%s/%s", dir, STORE_FILE) < 0)
    {
      free (s);
      snprintf (err, errlen, "the definitions store: out of memory");
      return -1;
    }
  s->path = path;
  s->wal_fd = -1;
  cow_mutex_init (&s->ck_mu, PTHREAD_MUTEX_NORMAL); /* the loop waits */
  pthread_cond_init (&s->ck_cv, NULL);
  int rc = sqlite3_open_v2 (
      path, &s->db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    snprintf (err, errlen, "cannot open the definitions store %s: %s", path,
              s->db ? sqlite3_errmsg (s->db) : sqlite3_errstr (rc));
  if (rc != SQLITE_OK || store_schema (s, err, errlen) < 0)
    goto out_close;
  sqlite3_busy_timeout (s->db, 1000);
  sqlite3_wal_hook (s->db, store_wal_hook, s);
  for (int i = 0; i < ST__N; i++)
    if (sqlite3_prepare_v3 (s->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &s->st[i], NULL)
        != SQLITE_OK)
      {
        snprintf (err, errlen, "the definitions store: cannot prepare %s: %s",
                  store_sql[i], sqlite3_errmsg (s->db));
        goto out_close;
      }
  *out = s;
  return 0;

out_close:
  store_close (s);
  return -1;
}

void
store_close (struct store *s)
{
  if (!s)
    return;
  if (s->ck_db)
    {
      pthread_mutex_lock (&s->ck_mu);
      s->ck_quit = true;
      pthread_cond_signal (&s->ck_cv);
      pthread_mutex_unlock (&s->ck_mu);
      pthread_join (s->ck_thread, NULL);
      sqlite3_close (s->ck_db);
    }
  for (int i = 0; i < ST__N; i++)
    sqlite3_finalize (s->st[i]);
  sqlite3_close (s->db);
  pthread_mutex_destroy (&s->ck_mu);
  pthread_cond_destroy (&s->ck_cv);
  if (s->wal_fd >= 0)
    close (s->wal_fd);
  free (s->path);
  free (s);
}

/* The log file stays while a connection is open (WAL mode; this one's
 * lasts as long as s), so one descriptor serves every fdatasync. */
int
store_log_fd (struct store *s)
{
  if (s->wal_fd < 0)
    {
      char *p;
      if (asprintf (&p, "%s-wal", s->path) < 0)
        return -1;
      s->wal_fd = open (p, O_RDONLY | O_CLOEXEC);
      free (p);
    }
  return s->wal_fd;
}

int
store_begin (struct store *s, enum store_sync sync)
{
  if (sync != STORE_DURABLE && store_step (s, ST_NORMAL) < 0)
    return -1;
  if (store_step (s, ST_BEGIN) < 0)
    {
      if (sync != STORE_DURABLE)
        store_step (s, ST_FULL);
      return -1;
    }
  s->in_txn = true;
  s->txn_rows = 0;
  s->sync = sync;
  return 0;
}

bool
store_in_lazy (const struct store *s)
{
  return s->in_txn && s->sync != STORE_DURABLE;
}

unsigned
store_txn_rows (const struct store *s)
{
  return s->in_txn ? s->txn_rows : 0;
}

static void
store_end (struct store *s)
{
  s->in_txn = false;
  if (s->sync != STORE_DURABLE)
    store_step (s, ST_FULL);
  s->sync = STORE_DURABLE;
}

int
store_commit (struct store *s)
{
  int r = store_step (s, ST_COMMIT);
  if (r < 0)
    store_step (s, ST_ROLLBACK);
  store_end (s);
  return r;
}

void
store_rollback (struct store *s)
{
  store_step (s, ST_ROLLBACK);
  store_end (s);
}

static int
store_bind_def (struct store *s, const struct store_def *d)
{
  sqlite3_stmt *st = s->st[ST_PUT];
  const char *t[] = { d->name, d->base, d->cow };
  for (int i = 0; i < 3; i++)
    if (sqlite3_bind_text (st, i + 1, t[i], -1, SQLITE_STATIC) != SQLITE_OK)
      return -1;
  if (sqlite3_bind_int64 (st, 4, d->chunk_size) != SQLITE_OK
      || sqlite3_bind_text (st, 5, d->commit, -1, SQLITE_STATIC) != SQLITE_OK
      || sqlite3_bind_int (st, 6, d->exclusive) != SQLITE_OK
      || sqlite3_bind_int (st, 7, d->buffered) != SQLITE_OK
      || sqlite3_bind_int (st, 8, d->attached) != SQLITE_OK
      || sqlite3_bind_text (st, 9, d->cow_ident ? d->cow_ident : "", -1,
                            SQLITE_STATIC)
             != SQLITE_OK)
    return -1;
  return 0;
}

/* One statement, in the caller's transaction or in its own. */
static int
store_write (struct store *s, enum store_sync sync, int which,
             const struct store_def *d, const char *name)
{
  bool own = !s->in_txn;
  if (own && store_begin (s, sync) < 0)
    return -1;
  int r = d ? store_bind_def (s, d)
            : (sqlite3_bind_text (s->st[ST_DEL], 1, name, -1, SQLITE_STATIC)
                       != SQLITE_OK
                   ? -1
                   : 0);
  if (r < 0)
    {
      store_fail (s, "binding a definition");
      sqlite3_clear_bindings (s->st[which]);
    }
  else if ((r = store_step (s, which)) == 0)
    s->txn_rows++;
  if (own && r < 0)
    store_rollback (s);
  else if (own)
    r = store_commit (s);
  return r;
}

int
store_put (struct store *s, const struct store_def *d)
{
  return store_write (s, STORE_DURABLE, ST_PUT, d, NULL);
}

int
store_put_lazy (struct store *s, const struct store_def *d)
{
  return store_write (s, STORE_LAZY, ST_PUT, d, NULL);
}

int
store_delete (struct store *s, const char *name)
{
  return store_write (s, STORE_DURABLE, ST_DEL, NULL, name);
}

static const char *
store_col (sqlite3_stmt *st, int i)
{
  const char *t = (const char *) sqlite3_column_text (st, i);
  return t ? t : "";
}

long
store_count (struct store *s)
{
  sqlite3_stmt *st = s->st[ST_COUNT];
  long n = sqlite3_step (st) == SQLITE_ROW ? sqlite3_column_int64 (st, 0) : -1;
  sqlite3_reset (st);
  return n < 0 ? store_fail (s, "counting the definitions") : n;
}

int
store_foreach (struct store *s, store_row_fn *fn, void *ud)
{
  sqlite3_stmt *st = s->st[ST_ALL];
  int rc, r = 0;
  while (r >= 0 && (rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      struct store_def d
          = { .name = store_col (st, 0),
              .base = store_col (st, 1),
              .cow = store_col (st, 2),
              .chunk_size = (uint32_t) sqlite3_column_int64 (st, 3),
              .commit = store_col (st, 4),
              .exclusive = sqlite3_column_int (st, 5) != 0,
              .buffered = sqlite3_column_int (st, 6) != 0,
              .attached = sqlite3_column_int (st, 7) != 0,
              .cow_ident = store_col (st, 8) };
      r = fn (ud, &d);
    }
  if (r >= 0 && rc != SQLITE_DONE)
    r = store_fail (s, "reading the definitions");
  sqlite3_reset (st);
  return r;
}
