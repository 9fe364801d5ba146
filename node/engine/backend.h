/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Backends: where a volume's base and CoW bytes live.
 *
 * A backend is an asynchronous block device: a regular file or block
 * device opened O_DIRECT and driven through io_uring (backend-file.c), or
 * an iSCSI LUN driven through libiscsi's asynchronous API
 * (backend-iscsi.c).  Both run on cowd's single qb_loop thread; no thread
 * per request.
 *
 * Rules every backend keeps:
 *  - submit functions return 0 when the request was queued, or a negative
 *    errno when it was not (then the callback is never called);
 *  - the callback is called exactly once, later, from the main loop, never
 *    from inside the submit call; res is 0 on success or a negative errno
 *    (-EIO for media errors, -ENOSPC for a full disk, -EACCES for a
 *    reservation conflict, -ETIMEDOUT past the reconnect deadline);
 *  - buffers and offsets must be multiples of `align`; the caller keeps
 *    the buffer alive until the callback;
 *  - a backend never caches: a shared LUN's page cache is never trusted.
 */
#ifndef COWD_BACKEND_H
#define COWD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dscow.h"

struct backend;
struct stat;

typedef void bk_done_fn (void *opaque, int res);

#define BK_FUA 0x1u     /* write: durable before completion */
#define BK_NOCACHE 0x2u /* write: around a page cache (O_DIRECT) */

struct backend_ops
{
  const char *name; /* "file", "iscsi" */
  int (*read) (struct backend *bk, void *buf, uint64_t off, size_t len,
               bk_done_fn *done, void *opaque);
  int (*write) (struct backend *bk, const void *buf, uint64_t off, size_t len,
                unsigned flags, bk_done_fn *done, void *opaque);
  int (*flush) (struct backend *bk, bk_done_fn *done, void *opaque);
  /* Optional (NULL when unsupported): deallocate a range. */
  int (*discard) (struct backend *bk, uint64_t off, size_t len,
                  bk_done_fn *done, void *opaque);
  /* Optional: this host may not write now (fenced, lease out): drop the
   * connection so that nothing already sent but not yet delivered reaches
   * the device later; requests in flight stay and are sent again on the
   * next connection, writes once backend_opts.may_write allows them (or
   * refused when it says this host was fenced). */
  void (*abort) (struct backend *bk);
  /* Optional: the writes waiting for may_write (the lease) will never be
   * sent (their volume closes, or this host was fenced): they fail with
   * EIO, from the loop, soon after. */
  void (*give_up) (struct backend *bk);
  void (*close) (struct backend *bk);
  /* Optional: put a backend opened with blocking_only and loop_later on
   * the loop; 0 or -errno with a sentence in err. */
  int (*start_loop) (struct backend *bk, char *err, size_t errlen);
  /* Blocking variants for setup paths only (format, open, close): they
   * return 0 or -errno and never touch the main loop. */
  int (*pread_sync) (struct backend *bk, void *buf, uint64_t off, size_t len);
  int (*pwrite_sync) (struct backend *bk, const void *buf, uint64_t off,
                      size_t len, unsigned flags); /* BK_FUA */
  int (*flush_sync) (struct backend *bk);
};

enum backend_health
{
  BK_HEALTHY = 0,
  BK_RECONNECTING, /* session lost, retrying within deadline */
  BK_DEGRADED,     /* deadline passed: requests fail with EIO */
  BK_FENCED,       /* writes rejected: reservation conflict */
};

struct backend
{
  const struct backend_ops *ops;
  char *uri;      /* what the operator gave: path or iscsi:// */
  uint64_t size;  /* bytes */
  uint32_t align; /* buffer, offset and length alignment */
  bool writable;
  bool is_blockdev;
  char ident[128]; /* stable identity: "naa.6001...", "digest:...";
                    * files fill it only for read-only opens */
  char key[320];   /* the device however named (backend_key) */
  enum backend_health health;
  uint64_t sync_ns; /* time spent in the blocking calls */
  void *priv;       /* the backend's own state */
};

/* Options from the volume definition and cowd's configuration. */
struct backend_opts
{
  bool writable;
  bool direct;                /* O_DIRECT for files; always for shared LUNs */
  const char *initiator_name; /* iSCSI initiator IQN of this host */
  const char *chap_user;      /* from the config file, never argv */
  const char *chap_password;
  unsigned reconnect_deadline_ms; /* iSCSI: fail requests after this */
  /* iSCSI: called after the first login and after every re-login, before
   * anything else is sent on the new session (fencing registers its key
   * there: a registration belongs to the session). */
  void (*on_login) (struct backend *bk, void *opaque);
  void *on_login_opaque;
  /* iSCSI: the target rejected a write with RESERVATION CONFLICT (this
   * host was fenced); called once, from the main loop. */
  void (*on_fenced) (struct backend *bk, void *opaque);
  /* Tests only (NULL in cowd): called on every writable backend once it is
   * open, to put a layer under the engine (tests/crash/wlog.c records
   * every write and flush); returns 0 with *bk replaced, or -errno. */
  int (*wrap) (struct backend **bk, void *opaque);
  void *wrap_opaque;
  /* iSCSI: may this host write now?  0 yes; -EACCES never (this host was
   * fenced: writes fail); -EAGAIN not yet (its lease is out: writes wait,
   * unsent, until it is back or the reconnect deadline passes).  Asked
   * before each write is sent, sent again or submitted; NULL = always. */
  int (*may_write) (struct backend *bk, void *opaque);
  /* Opened for the blocking calls alone (backend_*_sync), on any thread:
   * nothing of it is put on cowd's loop (no io_uring eventfd, no iSCSI
   * socket or timer), and its asynchronous calls may not be used.  cowd's
   * create formats on a thread this way. */
  bool blocking_only;
  /* With blocking_only: opened on a thread for the loop, which puts it
   * there with backend_start_loop (an attach opens its devices so).
   * on_login is called then, on the loop, not at the login. */
  bool loop_later;
};

/* Open a backend by URI: "iscsi://..." goes to libiscsi, anything else is
 * a path.  A writable file or block device is held exclusively while it is
 * open, so that no second volume, in this cowd or another, writes it: a
 * block device is opened O_EXCL, a regular file takes an OFD write lock
 * (fcntl F_OFD_SETLK) on its whole length; a device held already fails
 * with -EBUSY.  On failure returns -errno and writes one sentence naming the
 * device and the cause into err. */
int backend_open (const char *uri, const struct backend_opts *opts,
                  struct backend **out, char *err, size_t errlen);
void backend_close (struct backend *bk);
/* On the loop: a backend opened on a thread with backend_opts.blocking_only
 * and loop_later serves asynchronous calls from now on.  0, or -errno
 * with one sentence in err. */
int backend_start_loop (struct backend *bk, char *err, size_t errlen);
/* The blocking calls, timed into bk->sync_ns: everything the loop waited
 * for on this device (format, open, the standalone takeover, close). */
int backend_pread_sync (struct backend *bk, void *buf, uint64_t off,
                        size_t len);
int backend_pwrite_sync (struct backend *bk, const void *buf, uint64_t off,
                         size_t len, unsigned flags);
int backend_flush_sync (struct backend *bk);
/* What a device is, however it is named, as a string two names of one
 * device share: "blk:MAJ:MIN" for a block device (symlinks and
 * /dev/disk/by-* aliases followed), "file:DEV:INO" for a regular file,
 * "iscsi:iscsi://HOST:PORT/IQN/LUN" for an iSCSI URL (the port filled in,
 * credentials dropped), or "path:PATH" for a path that cannot be examined
 * now.  No IO: a stat or a parse.  An open backend holds its own in
 * bk->key. */
void backend_key (const char *uri, char *key, size_t len);
void backend_key_stat (const struct stat *st, char *key, size_t len);
/* A regular file backend's stamp now (one fstat); kind DSCOW_STAMP_NONE
 * for block devices and LUNs, whose identity is bk->ident and size. */
void backend_file_stamp (struct backend *bk, struct dscow_base_stamp *st);
/* The descriptor of a file or block device backend (-1 for others), for
 * SG_IO on a block device. */
int backend_file_fd (struct backend *bk);

/* Per-type openers, called by backend_open. */
int backend_file_open (const char *path, const struct backend_opts *opts,
                       struct backend **out, char *err, size_t errlen);
int backend_iscsi_open (const char *url, const struct backend_opts *opts,
                        struct backend **out, char *err, size_t errlen);

#endif /* COWD_BACKEND_H */
