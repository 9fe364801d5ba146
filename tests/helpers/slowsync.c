/* SPDX-License-Identifier: GPL-2.0-or-later */
/* slowsync.so, an LD_PRELOAD shim for tests: syncfs, fsync and fdatasync
 * take SLOWSYNC_MS milliseconds (default 300) longer, as on a busy disk.  A
 * test that runs cowd under it sees whether a wait for the disk keeps
 * cowd's loop, and so its NBD clients, waiting (create-batch-offload.sh).
 * SQLite's unix VFS calls fsync or fdatasync through a pointer to the
 * symbol, which the preload takes too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void
slow (void)
{
  const char *e = getenv ("SLOWSYNC_MS");
  long ms = e ? atol (e) : 300;
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) < 0)
    ;
}

/* fn, SLOWSYNC_MS late. */
#define SLOW_WRAPPER(fn)                                                       \
  int fn (int fd)                                                              \
  {                                                                            \
    static int (*real) (int);                                                  \
    if (!real)                                                                 \
      *(void **) &real = dlsym (RTLD_NEXT, #fn);                               \
    slow ();                                                                   \
    return real (fd);                                                          \
  }

SLOW_WRAPPER (syncfs)
SLOW_WRAPPER (fsync)
SLOW_WRAPPER (fdatasync)
