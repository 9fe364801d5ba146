/* SPDX-License-Identifier: GPL-2.0-or-later */
/* store.h: the durable definitions store of cowd (store.c): one row per
 * volume in STATE_DIR/volumes.db, SQLite in WAL mode.  Depends on nothing
 * of cowd's, so tests/unit/check_store.c links it alone. */
#ifndef COWD_STORE_H
#define COWD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_FILE "volumes.db"

/* One definition as stored; commit is the policy's name (sync, flush,
 * none).  The strings belong to the caller (put) or to the store for the
 * duration of a foreach callback. */
struct store_def
{
  const char *name, *base, *cow, *commit;
  const char *cow_ident; /* the CoW LUN's VPD identity; NULL = "" */
  uint32_t chunk_size;
  bool exclusive, buffered, attached;
};

/* How a transaction reaches the disk.  DURABLE: its commit returns once
 * the write-ahead log is fsynced (an acknowledged create survives a power
 * cut).  LAZY: the commit is written to the log but not fsynced; a power
 * cut may lose it (never tear it), and the next DURABLE commit makes it
 * durable too: for what the cluster can give back (definitions received
 * from other hosts) and the attached flag. */
enum store_sync
{
  STORE_DURABLE,
  STORE_LAZY,
};

struct store;

/* Open (creating) DIR/volumes.db.  0, or -1 with a sentence in err. */
int store_open (const char *dir, struct store **out, char *err, size_t errlen);
void store_close (struct store *s);

/* A transaction around several puts and deletes: one commit, one fsync
 * (DURABLE) for all.  Outside one, each put or delete is its own DURABLE
 * transaction.  0 or -1 (logged). */
int store_begin (struct store *s, enum store_sync sync);
/* Is a LAZY transaction open? */
bool store_in_lazy (const struct store *s);
/* The puts and deletes written in the open transaction; 0 outside one. */
unsigned store_txn_rows (const struct store *s);
int store_commit (struct store *s);
void store_rollback (struct store *s);
/* The log (DIR/volumes.db-wal), read-only, for an fdatasync off the loop
 * that makes a LAZY commit durable: what synchronous=FULL's commit does,
 * later (voldb_store_deferred).  -1 with errno. */
int store_log_fd (struct store *s);

/* Insert or replace the row of d->name. */
int store_put (struct store *s, const struct store_def *d);
int store_put_lazy (struct store *s, const struct store_def *d);
int store_delete (struct store *s, const char *name);

/* Checkpoints: copying the write-ahead log into the database.  SQLite's
 * own runs inside the commit that fills the log to 1,000 pages and took
 * 4-6 ms of CPU there, on top of the commit (a joiner's adoption batch, a
 * slice of create --from); so the store turns it off and counts the log's
 * pages after each commit instead.  Once store_checkpoint_due, the owner
 * calls store_checkpoint_start, which hands it to the store's thread
 * (PASSIVE: it never waits for a reader, and the owner's connection
 * writes on meanwhile) and returns at once, or store_checkpoint, which
 * runs it on the caller's connection and thread.  0, or -1 (logged: a
 * start logs the failure of the one before it); nothing is lost without
 * one, the log only grows until the next. */
#define STORE_CHECKPOINT_PAGES 1000
bool store_checkpoint_due (const struct store *s);
int store_checkpoint (struct store *s);
int store_checkpoint_start (struct store *s);
/* Until no checkpoint is wanted or running (tests, and a clean stop). */
void store_checkpoint_wait (struct store *s);
/* How many the store's thread has run. */
unsigned store_checkpoints (struct store *s);

/* How many rows there are (a scan of the table), or -1 (logged). */
long store_count (struct store *s);

/* Every row in name order; a callback returning < 0 stops with that. */
typedef int store_row_fn (void *ud, const struct store_def *d);
int store_foreach (struct store *s, store_row_fn *fn, void *ud);

#endif
