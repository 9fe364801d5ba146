/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/pidgone.h: is a process gone?  For what a killed process left
 * behind (libqb's /dev/shm files: the blackbox, control connections),
 * which may be removed only once no process of that pid is alive. */
#ifndef COWHERD_PIDGONE_H
#define COWHERD_PIDGONE_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <unistd.h>

/* No process has pid (kill says ESRCH); never this process. */
static inline bool
cow_pid_gone (int pid)
{
  return pid > 0 && pid != getpid () && kill (pid, 0) < 0 && errno == ESRCH;
}

#endif
