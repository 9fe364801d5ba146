/* SPDX-License-Identifier: GPL-2.0-or-later */
/* blackbox.c: cowd's flight recorder, written where an operator reads it.
 *
 * libqb keeps the last MiB of log records, debug included, in a ring
 * buffer mapped from /dev/shm (qb-cowd-PID-blackbox-header and -data).
 * Nobody reads it there, and a cowd killed with SIGKILL leaves the pair
 * behind, so:
 *   - at start, the pairs of cowd processes that no longer exist are
 *     removed (the live ones belong to other cowd instances);
 *   - on a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) the
 *     ring is written to STATE_DIR/cowd-blackbox-PID-crash, then the
 *     signal takes its course (the handler is reset first: a second fault
 *     kills at once);
 *   - `cowctl debug dump` writes it to STATE_DIR/cowd-blackbox-PID-SECONDS.
 * Read either with qb-blackbox FILE (libqb's tool).  A clean stop removes
 * the /dev/shm pair (qb_log_fini).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cowlog.h"
#include "pidgone.h"

#include "cowd.h"

#define BLACKBOX_SHM_DIR "/dev/shm"

static char crash_path[4096];

/* Remove the /dev/shm pairs of cowd processes that are gone. */
static void
blackbox_clean_stale (void)
{
  DIR *d = opendir (BLACKBOX_SHM_DIR);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      int pid, end = 0;
      if (sscanf (de->d_name, "qb-cowd-%d-blackbox-%n", &pid, &end) != 1
          || end == 0 || !cow_pid_gone (pid))
        continue;
      if (unlinkat (dirfd (d), de->d_name, 0) == 0)
        qb_log (LOG_DEBUG, "cowd: removed %s/%s of a cowd that is gone",
                BLACKBOX_SHM_DIR, de->d_name);
    }
  closedir (d);
}

static void
blackbox_on_fatal (int sig)
{
  qb_log_blackbox_write_to_file (crash_path);
  raise (sig); /* the handler was reset: SA_RESETHAND */
}

void
blackbox_start (void)
{
  blackbox_clean_stale ();
  qb_log_ctl (QB_LOG_BLACKBOX, QB_LOG_CONF_SIZE, 1024 * 1024);
  qb_log_ctl (QB_LOG_BLACKBOX, QB_LOG_CONF_ENABLED, QB_TRUE);
  qb_log_filter_ctl (QB_LOG_BLACKBOX, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE,
                     "*", LOG_DEBUG);
  snprintf (crash_path, sizeof crash_path, "%s/cowd-blackbox-%d-crash",
            cowd.state_dir, (int) getpid ());
  struct sigaction sa
      = { .sa_handler = blackbox_on_fatal, .sa_flags = (int) SA_RESETHAND };
  sigemptyset (&sa.sa_mask);
  static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
  for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
    sigaction (fatal[i], &sa, NULL);
}

int
blackbox_dump (char *path, size_t len)
{
  snprintf (path, len, "%s/cowd-blackbox-%d-%lld", cowd.state_dir,
            (int) getpid (), (long long) time (NULL));
  ssize_t r = qb_log_blackbox_write_to_file (path);
  if (r < 0)
    return (int) r;
  qb_log (LOG_INFO, "cowd: blackbox written to %s", path);
  return 0;
}
