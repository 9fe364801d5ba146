/* SPDX-License-Identifier: GPL-2.0-or-later */
/* backend-file.c: regular files and block devices through io_uring.
 *
 * One io_uring serves every file backend of the process.  Its completion
 * queue signals an eventfd that sits on cowd's qb_loop, so completions are
 * handled on the main thread like everything else: no threads, no
 * blocking on the data path.
 *
 * Submission: outside a completion, each request is submitted at once;
 * requests started by completions (a CoW fault's copy, the next commit
 * step) are gathered and submitted once when the completion batch is
 * done.  (A qb_loop job would batch more, but libqb runs jobs added from
 * a poll dispatch only after the next poll, which costs milliseconds.)
 * When the submission queue is full, requests wait in an overflow list
 * and are queued as completions free slots.
 *
 * Shared devices are opened O_DIRECT (the page cache of a shared LUN is
 * never trusted).  A plain file may be opened buffered when the operator
 * asks for it (backend_opts.direct = false); that is stated in status.
 *
 * A writable device is held exclusively while open (O_EXCL for a block
 * device, an OFD lock for a file; backend.h), so a CoW device is written
 * by one volume of one cowd on this host.
 *
 * Short transfers (which O_DIRECT can return) are resubmitted for the
 * remainder; a zero-length read (end of file) completes with -EIO.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>
#include "cowlog.h"
#include "cowmutex.h"

#include "backend.h"
#include "dscow.h"
#include "loop.h"

#define RING_ENTRIES 1024

enum fio_op
{
  FIO_READ,
  FIO_WRITE,
  FIO_FLUSH,
  FIO_DISCARD,
};

struct fio_req
{
  struct fio_req *next; /* overflow list */
  struct backend *bk;
  enum fio_op op;
  char *buf;
  uint64_t off;
  size_t len; /* bytes left */
  unsigned flags;
  bk_done_fn *done;
  void *opaque;
};

struct file_priv
{
  int fd;
  int dfd; /* a buffered writable file: the same file
            * O_DIRECT for BK_NOCACHE writes, or -1 */
};

/* The process-wide ring; main thread only. */
static struct
{
  bool init;
  struct io_uring ring;
  int efd;
  unsigned in_ring; /* requests holding an SQE/CQE */
  bool submit_scheduled;
  bool batching; /* inside ring_dispatch */
  struct fio_req *ovf_head, *ovf_tail;
} R;

static void ring_submit (void);

static int
file_fd (struct backend *bk)
{
  return ((struct file_priv *) bk->priv)->fd;
}

/* The descriptor request r goes through. */
static int
req_fd (const struct fio_req *r)
{
  const struct file_priv *fp = r->bk->priv;
  return r->op == FIO_WRITE && (r->flags & BK_NOCACHE) && fp->dfd >= 0 ? fp->dfd
                                                                       : fp->fd;
}

static void
ring_submit_cb (void *data)
{
  ring_submit ();
}

/* Submitted at once (a request read from a client starts its IO before
 * the next is read), except from ring_dispatch: what completions start
 * goes out in one io_uring_enter at its end. */
static void
ring_schedule_submit (void)
{
  if (R.submit_scheduled)
    return;
  R.submit_scheduled = true;
  if (R.batching)
    return; /* ring_dispatch submits when it is done */
  ring_submit ();
}

static void
ring_prep (struct io_uring_sqe *sqe, struct fio_req *r)
{
  int fd = req_fd (r);
  switch (r->op)
    {
    case FIO_READ:
      io_uring_prep_read (sqe, fd, r->buf, (unsigned) r->len, r->off);
      break;
    case FIO_WRITE:
      io_uring_prep_write (sqe, fd, r->buf, (unsigned) r->len, r->off);
      if (r->flags & BK_FUA)
        sqe->rw_flags = RWF_DSYNC;
      break;
    case FIO_FLUSH:
      io_uring_prep_fsync (sqe, fd, IORING_FSYNC_DATASYNC);
      break;
    case FIO_DISCARD:
      io_uring_prep_fallocate (
          sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->off, r->len);
      break;
    }
  io_uring_sqe_set_data (sqe, r);
}

/* Queue r in the ring, or in the overflow list when the ring is full. */
static void
ring_queue (struct fio_req *r)
{
  struct io_uring_sqe *sqe = NULL;
  if (!R.ovf_head && R.in_ring < RING_ENTRIES)
    sqe = io_uring_get_sqe (&R.ring);
  if (!sqe)
    {
      r->next = NULL;
      if (R.ovf_tail)
        R.ovf_tail->next = r;
      else
        R.ovf_head = r;
      R.ovf_tail = r;
      return;
    }
  R.in_ring++;
  ring_prep (sqe, r);
  ring_schedule_submit ();
}

static void
ring_drain_overflow (void)
{
  while (R.ovf_head && R.in_ring < RING_ENTRIES)
    {
      struct io_uring_sqe *sqe = io_uring_get_sqe (&R.ring);
      if (!sqe)
        break;
      struct fio_req *r = R.ovf_head;
      R.ovf_head = r->next;
      if (!R.ovf_head)
        R.ovf_tail = NULL;
      R.in_ring++;
      ring_prep (sqe, r);
      ring_schedule_submit ();
    }
}

static void
ring_submit (void)
{
  R.submit_scheduled = false;
  int r = io_uring_submit (&R.ring);
  if (r < 0 && r != -EAGAIN && r != -EBUSY)
    qb_log (LOG_ERR, "file: io_uring_submit failed: %s", strerror (-r));
  if ((r == -EAGAIN || r == -EBUSY) && cowd_defer (ring_submit_cb, NULL) == 0)
    R.submit_scheduled = true; /* the kernel is short: next loop pass */
}

/* One CQE: finish the request or resubmit the remainder of a short one. */
static void
ring_complete (struct fio_req *r, int res)
{
  R.in_ring--;
  if (res >= 0 && (r->op == FIO_READ || r->op == FIO_WRITE)
      && (size_t) res < r->len)
    {
      if (res == 0)
        res = -EIO; /* end of device inside a request */
      else
        {
          r->buf += res;
          r->off += (uint64_t) res;
          r->len -= (size_t) res;
          ring_queue (r);
          return;
        }
    }
  bk_done_fn *done = r->done;
  void *opaque = r->opaque;
  free (r);
  done (opaque, res < 0 ? res : 0);
}

static int
ring_dispatch (int fd, int revents, void *data)
{
  uint64_t n;
  if (read (R.efd, &n, sizeof n) < 0 && errno != EAGAIN)
    qb_log (LOG_ERR, "file: reading the io_uring eventfd failed: %m");
  /* Requests that completions start are submitted together at the end. */
  cowd_batch_begin (); /* the NBD replies of these completions */
  R.batching = true;
  for (;;)
    {
      struct io_uring_cqe *cqe;
      if (io_uring_peek_cqe (&R.ring, &cqe) != 0)
        break;
      struct fio_req *r = io_uring_cqe_get_data (cqe);
      int res = cqe->res;
      io_uring_cqe_seen (&R.ring, cqe);
      ring_complete (r, res);
    }
  ring_drain_overflow ();
  R.batching = false;
  if (R.submit_scheduled)
    ring_submit ();
  cowd_batch_end ();
  return 0;
}

static int
ring_init (char *err, size_t errlen)
{
  if (R.init)
    return 0;
  int r = io_uring_queue_init (RING_ENTRIES, &R.ring, 0);
  if (r < 0)
    {
      snprintf (err, errlen, "cannot set up io_uring: %s", strerror (-r));
      return r;
    }
  R.efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (R.efd < 0 || io_uring_register_eventfd (&R.ring, R.efd) < 0)
    {
      snprintf (err, errlen, "cannot set up the io_uring eventfd: %m");
      io_uring_queue_exit (&R.ring);
      return -errno;
    }
  cowd_io_poll_add (R.efd, POLLIN, NULL, ring_dispatch);
  R.init = true;
  return 0;
}

static int
file_submit (struct backend *bk, enum fio_op op, void *buf, uint64_t off,
             size_t len, unsigned flags, bk_done_fn *done, void *opaque)
{
  struct fio_req *r = malloc (sizeof *r);
  if (!r)
    return -ENOMEM;
  *r = (struct fio_req){ .bk = bk,
                         .op = op,
                         .buf = buf,
                         .off = off,
                         .len = len,
                         .flags = flags,
                         .done = done,
                         .opaque = opaque };
  ring_queue (r);
  return 0;
}

static int
file_read (struct backend *bk, void *buf, uint64_t off, size_t len,
           bk_done_fn *done, void *opaque)
{
  return file_submit (bk, FIO_READ, buf, off, len, 0, done, opaque);
}

static int
file_write (struct backend *bk, const void *buf, uint64_t off, size_t len,
            unsigned flags, bk_done_fn *done, void *opaque)
{
  if (!bk->writable)
    return -EROFS;
  return file_submit (bk, FIO_WRITE, (void *) buf, off, len, flags, done,
                      opaque);
}

static int
file_flush (struct backend *bk, bk_done_fn *done, void *opaque)
{
  return file_submit (bk, FIO_FLUSH, NULL, 0, 0, 0, done, opaque);
}

static int
file_discard (struct backend *bk, uint64_t off, size_t len, bk_done_fn *done,
              void *opaque)
{
  if (!bk->writable)
    return -EROFS;
  return file_submit (bk, FIO_DISCARD, NULL, off, len, 0, done, opaque);
}

static int
file_rw_sync (struct backend *bk, void *buf, uint64_t off, size_t len,
              bool write, unsigned flags)
{
  char *p = buf;
  while (len > 0)
    {
      struct iovec iov = { .iov_base = p, .iov_len = len };
      ssize_t r = write ? pwritev2 (file_fd (bk), &iov, 1, (off_t) off,
                                    flags & BK_FUA ? RWF_DSYNC : 0)
                        : pread (file_fd (bk), p, len, (off_t) off);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return r < 0 ? -errno : -EIO;
      p += r, off += (uint64_t) r, len -= (size_t) r;
    }
  return 0;
}

static int
file_pread_sync (struct backend *bk, void *buf, uint64_t off, size_t len)
{
  return file_rw_sync (bk, buf, off, len, false, 0);
}

static int
file_pwrite_sync (struct backend *bk, const void *buf, uint64_t off, size_t len,
                  unsigned flags)
{
  if (!bk->writable)
    return -EROFS;
  return file_rw_sync (bk, (void *) buf, off, len, true, flags);
}

static int
file_flush_sync (struct backend *bk)
{
  return fdatasync (file_fd (bk)) < 0 ? -errno : 0;
}

static void
file_close (struct backend *bk)
{
  struct file_priv *fp = bk->priv;
  if (fp->dfd >= 0)
    close (fp->dfd);
  close (file_fd (bk));
  free (bk->priv);
  free (bk->uri);
  free (bk);
}

static int
file_start_loop (struct backend *bk, char *err, size_t errlen)
{
  (void) bk;
  return ring_init (err, errlen);
}

static const struct backend_ops file_ops = {
  .name = "file",
  .read = file_read,
  .write = file_write,
  .flush = file_flush,
  .discard = file_discard,
  .close = file_close,
  .start_loop = file_start_loop,
  .pread_sync = file_pread_sync,
  .pwrite_sync = file_pwrite_sync,
  .flush_sync = file_flush_sync,
};

int
backend_file_fd (struct backend *bk)
{
  return bk->ops == &file_ops ? file_fd (bk) : -1;
}

/* The digests of the last few regular files whose identity was
 * computed, by the stamp the engine already checks a base against (device,
 * inode, size, modification and change times): a golden image that
 * thousands of volumes are created over is read once, not 2 MiB per
 * create.  A file whose stamp moved is read again.  Under a lock: a
 * create formats (opens its base) on a thread of its own. */
#define FILE_IDENT_CACHE 8

static struct file_ident_cached
{
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime, ctime;
  char ident[sizeof ((struct backend *) 0)->ident];
} file_ident_cache[FILE_IDENT_CACHE];
static unsigned file_ident_next;
static pthread_mutex_t file_ident_lock;
static pthread_once_t file_ident_once = PTHREAD_ONCE_INIT;

/* Shared by the loop and the threads that open files (cowmutex.h). */
static void
file_ident_init (void)
{
  cow_mutex_init (&file_ident_lock, PTHREAD_MUTEX_NORMAL);
}

static bool
file_ident_same (const struct file_ident_cached *c, const struct stat *st)
{
  return c->ident[0] && c->dev == st->st_dev && c->ino == st->st_ino
         && c->size == st->st_size && c->mtime.tv_sec == st->st_mtim.tv_sec
         && c->mtime.tv_nsec == st->st_mtim.tv_nsec
         && c->ctime.tv_sec == st->st_ctim.tv_sec
         && c->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* The cached identity of a regular file into bk: true when found. */
static bool
file_ident_lookup (struct backend *bk, const struct stat *st)
{
  bool found = false;
  pthread_once (&file_ident_once, file_ident_init);
  pthread_mutex_lock (&file_ident_lock);
  for (int i = 0; i < FILE_IDENT_CACHE && S_ISREG (st->st_mode) && !found; i++)
    if (file_ident_same (&file_ident_cache[i], st))
      {
        memcpy (bk->ident, file_ident_cache[i].ident, sizeof bk->ident);
        found = true;
      }
  pthread_mutex_unlock (&file_ident_lock);
  return found;
}

static void
file_ident_remember (const struct backend *bk, const struct stat *st)
{
  if (!S_ISREG (st->st_mode))
    return;
  pthread_once (&file_ident_once, file_ident_init);
  pthread_mutex_lock (&file_ident_lock);
  struct file_ident_cached *c
      = &file_ident_cache[file_ident_next++ % FILE_IDENT_CACHE];
  *c = (struct file_ident_cached){ .dev = st->st_dev,
                                   .ino = st->st_ino,
                                   .size = st->st_size,
                                   .mtime = st->st_mtim,
                                   .ctime = st->st_ctim };
  memcpy (c->ident, bk->ident, sizeof c->ident);
  pthread_mutex_unlock (&file_ident_lock);
}

/* A stable identity for a block device from sysfs (WWN or serial), or
 * for anything else a digest of the size and of the first and last MiB:
 * the base is read-only, so its content identifies it. */
static void
file_identity (struct backend *bk, struct stat *st)
{
  if (file_ident_lookup (bk, st))
    return;
  if (bk->is_blockdev)
    {
      char path[128], id[96] = "";
      snprintf (path, sizeof path, "/sys/dev/block/%u:%u/device/wwid",
                major (st->st_rdev), minor (st->st_rdev));
      FILE *f = fopen (path, "r");
      if (f && fgets (id, sizeof id, f))
        {
          id[strcspn (id, " \n")] = '\0';
          snprintf (bk->ident, sizeof bk->ident, "wwid:%s", id);
        }
      if (f)
        fclose (f);
      if (bk->ident[0])
        return;
    }
  uint32_t crc = 0;
  size_t n = 1024 * 1024;
  void *buf;
  if (posix_memalign (&buf, 4096, n) != 0)
    return;
  uint64_t heads[2] = { 0, bk->size > n ? bk->size - n : 0 };
  for (int i = 0; i < 2; i++)
    {
      size_t len = bk->size < n ? (size_t) bk->size : n;
      if (file_pread_sync (bk, buf, heads[i], len) == 0)
        crc = dscow_crc32c (crc, buf, len);
    }
  free (buf);
  snprintf (bk->ident, sizeof bk->ident, "digest:%" PRIu64 ":%08x", bk->size,
            crc);
  file_ident_remember (bk, st);
}

static int
file_size (struct backend *bk, int fd, struct stat *st)
{
  if (S_ISBLK (st->st_mode))
    {
      uint64_t size;
      int ssz = 512;
      if (ioctl (fd, BLKGETSIZE64, &size) < 0)
        return -errno;
      ioctl (fd, BLKSSZGET, &ssz);
      bk->size = size;
      bk->is_blockdev = true;
      bk->align = ssz > 4096 ? (uint32_t) ssz : 4096;
      return 0;
    }
  if (!S_ISREG (st->st_mode))
    return -EINVAL;
  bk->size = (uint64_t) st->st_size;
  bk->align = 4096;
  return 0;
}

/* A writable regular file is held with an OFD write lock on its whole
 * length: it belongs to the open file description, so a second open in
 * this process (another volume naming the same file) conflicts as a
 * second cowd does, and it goes away with the descriptor.
 *
 * Not always at once: when the description's last reference is dropped
 * outside our task (by io_uring, for a request an io-wq worker ran), the
 * kernel frees it from a work queue, a moment after close() returned,
 * and the lock with it.  An open right after a close of the same file (a detach
 * and an attach; crashcheck's points, one open after another: 14 of 269 points
 * refused "in use" in one CI run) then met our own lock.  So a conflict is
 * tried again for up to FILE_LOCK_WAIT_MS before it is one: a second cowd's
 * lock stays, and is reported that much later. */
#define FILE_LOCK_WAIT_MS 100

static int
file_lock (int fd)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  for (unsigned ms = 0;; ms += 2)
    {
      if (fcntl (fd, F_OFD_SETLK, &fl) == 0)
        return 0;
      if (errno != EAGAIN && errno != EACCES)
        return -errno;
      if (ms >= FILE_LOCK_WAIT_MS)
        return -EBUSY;
      struct timespec ts = { 0, 2000000 };
      nanosleep (&ts, NULL);
    }
}

void
backend_file_stamp (struct backend *bk, struct dscow_base_stamp *stamp)
{
  struct stat st;
  memset (stamp, 0, sizeof *stamp);
  if (bk->ops != &file_ops || bk->is_blockdev || fstat (file_fd (bk), &st) < 0
      || !S_ISREG (st.st_mode))
    return;
  *stamp = (struct dscow_base_stamp){
    .kind = DSCOW_STAMP_FILE,
    .dev = (uint64_t) st.st_dev,
    .ino = (uint64_t) st.st_ino,
    .mtime_ns = (uint64_t) st.st_mtim.tv_sec * 1000000000u
                + (uint64_t) st.st_mtim.tv_nsec,
    .ctime_ns
    = (uint64_t) st.st_ctim.tv_sec * 1000000000u + (uint64_t) st.st_ctim.tv_nsec
  };
}

/* A path that is not a regular file or block device (a directory,
 * /dev/null), said before open() fails on it with a puzzling errno. */
static int
file_check_kind (const char *path, char *err, size_t errlen)
{
  struct stat st;
  if (stat (path, &st) < 0 || S_ISREG (st.st_mode) || S_ISBLK (st.st_mode))
    return 0; /* open() says what is wrong, if anything */
  snprintf (err, errlen, "%s: is a %s, not a regular file or block device",
            path,
            S_ISDIR (st.st_mode)    ? "directory"
            : S_ISCHR (st.st_mode)  ? "character device"
            : S_ISFIFO (st.st_mode) ? "FIFO"
            : S_ISSOCK (st.st_mode) ? "socket"
                                    : "special file");
  return -ENODEV;
}

int
backend_file_open (const char *path, const struct backend_opts *opts,
                   struct backend **out, char *err, size_t errlen)
{
  int r = file_check_kind (path, err, errlen);
  if (r < 0 || (!opts->blocking_only && (r = ring_init (err, errlen)) < 0))
    return r;
  int flags = (opts->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  if (opts->direct)
    flags |= O_DIRECT;
  struct stat st;
  if (opts->writable && stat (path, &st) == 0 && S_ISBLK (st.st_mode))
    flags |= O_EXCL; /* held while open: see backend.h */
  int fd = open (path, flags);
  if (fd < 0)
    {
      r = -errno;
      if (r == -EBUSY)
        snprintf (err, errlen,
                  "%s: in use: it is open exclusively "
                  "elsewhere (another volume, a second cowd, or a mounted "
                  "file system)",
                  path);
      else
        snprintf (err, errlen, "%s: cannot open: %s", path, strerror (-r));
      return r;
    }
  struct backend *bk = calloc (1, sizeof *bk);
  struct file_priv *fp = calloc (1, sizeof *fp);
  if (!bk || !fp || fstat (fd, &st) < 0)
    {
      r = -errno;
      snprintf (err, errlen, "%s: cannot open: %s", path, strerror (-r));
      goto out_free;
    }
  fp->fd = fd;
  *bk = (struct backend){ .ops = &file_ops,
                          .uri = strdup (path),
                          .writable = opts->writable,
                          .priv = fp };
  backend_key_stat (&st, bk->key, sizeof bk->key);
  if (opts->writable && S_ISREG (st.st_mode) && (r = file_lock (fd)) < 0)
    {
      if (r == -EBUSY)
        snprintf (err, errlen,
                  "%s: in use: another volume or process holds "
                  "its lock (a second cowd?)",
                  path);
      else
        snprintf (err, errlen, "%s: cannot lock: %s", path, strerror (-r));
      goto out_free;
    }
  if ((r = file_size (bk, fd, &st)) < 0)
    {
      snprintf (err, errlen, "%s: not a regular file or block device", path);
      goto out_free;
    }
  /* A block device may be a shared LUN: never through the page cache. */
  if (bk->is_blockdev && !(flags & O_DIRECT)
      && fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_DIRECT) < 0)
    {
      r = -errno;
      snprintf (err, errlen, "%s: cannot switch to O_DIRECT: %s", path,
                strerror (-r));
      goto out_free;
    }
  /* What must be durable before an ack anyway (CoW faults and the
   * bitmap under `sync`) goes around the page cache of a buffered file:
   * one device write, not a copy into the cache written back by the next
   * flush.  A filesystem without O_DIRECT keeps the page cache for all. */
  fp->dfd = -1;
  if (!(flags & O_DIRECT) && !bk->is_blockdev && opts->writable
      && (fp->dfd = open (path, O_RDWR | O_CLOEXEC | O_DIRECT)) < 0
      && errno != EINVAL)
    {
      r = -errno;
      snprintf (err, errlen, "%s: cannot open: %s", path, strerror (-r));
      goto out_free;
    }
  /* Only a base's identity is ever checked: don't read 2 MiB of every
   * CoW device to compute one. */
  if (!opts->writable)
    file_identity (bk, &st);
  *out = bk;
  return 0;

out_free:
  free (bk ? bk->uri : NULL);
  free (bk);
  free (fp);
  close (fd);
  return r;
}
