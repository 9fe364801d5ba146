/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wlog.h: a write log under a backend, like the kernel's dm-log-writes.
 *
 * The layer (wlog_wrap) forwards every request to the backend under it
 * and, as each one completes, appends a record to a log file: WRITE with
 * its data (and FUA), DISCARD, FLUSH.  Writes are logged in completion
 * order; a FLUSH is logged when it completes and names how many records
 * were in the log when it was submitted (`covers`): exactly the writes it
 * made durable.  The program under test adds MARK records (its own
 * events: a request submitted, a request acknowledged), so the log alone
 * says what the device and the client saw, in one order.
 *
 * File format (little-endian, fixed width):
 *   header, 64 bytes:  magic "CWHWLOG\0", u32 version (1), u32 header
 *                      size (64), u64 device size, u32 sector size (512),
 *                      zero padding, u32 crc32c of the first 60 bytes.
 *   record, 48 bytes + payload:
 *                      u32 magic 0x474f4c57, u16 type, u16 flags,
 *                      u64 seq (0, 1, 2, ...), u64 off, u64 len,
 *                      u64 aux, u32 payload length, u32 crc32c of the
 *                      record with this field zero, then the payload.
 *   types: 1 WRITE (payload: the len bytes written at off; flags 1 = FUA)
 *          2 FLUSH (aux: covers)   3 DISCARD (off, len)
 *          4 MARK  (off, len, aux: the program's; payload: none)
 * A reader refuses a bad magic, version, checksum or sequence number.
 */
#ifndef COWHERD_WLOG_H
#define COWHERD_WLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define WLOG_VERSION 1u
#define WLOG_HEADER_SIZE 64u
#define WLOG_REC_SIZE 48u
#define WLOG_SECTOR 512u

enum wlog_type
{
  WLOG_WRITE = 1,
  WLOG_FLUSH = 2,
  WLOG_DISCARD = 3,
  WLOG_MARK = 4,
};

#define WLOG_F_FUA 0x1u

struct wlog_rec
{
  uint16_t type, flags;
  uint64_t seq, off, len, aux;
  const uint8_t *data; /* WRITE: len bytes (in the loaded log) */
};

/* Writing: one log, appended to by every layer put on it. */
struct wlog;
struct wlog *wlog_create (const char *path, uint64_t dev_size);
void wlog_free (struct wlog *log);
/* Records so far (the next record's seq). */
uint64_t wlog_count (const struct wlog *log);
int wlog_mark (struct wlog *log, uint64_t off, uint64_t len, uint64_t aux);
/* A backend_opts.wrap function: opaque is the struct wlog. */
int wlog_wrap (struct backend **bk, void *opaque);

/* Reading: the whole log in memory. */
struct wlog_file
{
  uint64_t dev_size;
  uint64_t n;
  struct wlog_rec *recs;
  uint8_t *raw;
};
/* Returns 0, or -1 with one sentence naming the file and the cause. */
int wlog_load (const char *path, struct wlog_file *f, char *err, size_t errlen);
void wlog_file_free (struct wlog_file *f);

/* Replay: the device as it was after records [0, point).  With tear ==
 * false every logged write and discard is applied (what a crash of the
 * program leaves); with tear == true the writes and discards no FLUSH
 * before the point covers (and not FUA) each land whole, not at all, or
 * torn at 512-byte sectors (a prefix or a random subset), chosen with
 * rand_r (seed): what a power cut with a volatile write cache leaves.
 * Writes the image to fd (truncated to the device size first).  Returns 0
 * or -errno. */
int wlog_replay (const struct wlog_file *f, uint64_t point, bool tear,
                 unsigned *seed, int fd);

#endif
