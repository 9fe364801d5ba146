/* SPDX-License-Identifier: GPL-2.0-or-later */
/* notify.c: cowd tells its service manager how far it is (sd_notify).
 *
 * cowd.service is Type=notify: systemd starts the units that need cowd
 * (the Xen domains whose disks are volumes, block-cow's callers) only after
 * READY=1.  Ready means two things, which finish in either order:
 *   NOTIFY_CONTROL  the control channel listens, so cowctl works;
 *   NOTIFY_VOLUMES  every volume attached when cowd last stopped is
 *                   attached again (standalone: at start; in a cluster:
 *                   once the ownership table has arrived, own.c).
 * READY=1 is sent once, when both are done; STATUS= lines say what cowd
 * waits for; STOPPING=1 at SIGTERM.  Without libsystemd (configure
 * --without-systemd) or without $NOTIFY_SOCKET these do nothing.
 *
 * Main loop only.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "cowd.h"

static unsigned notify_parts;

static void
notify_send (const char *msg)
{
#ifdef HAVE_SYSTEMD
  sd_notify (0, msg);
#else
  (void) msg;
#endif
}

void
notify_status (const char *fmt, ...)
{
  char *s = NULL, *msg = NULL;
  va_list ap;
  va_start (ap, fmt);
  int r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r >= 0 && asprintf (&msg, "STATUS=%s", s) >= 0)
    notify_send (msg);
  free (msg);
  free (s);
}

void
notify_ready_part (enum notify_part part)
{
  const unsigned all = NOTIFY_CONTROL | NOTIFY_VOLUMES;
  if (notify_parts == all)
    return;
  notify_parts |= part;
  if (notify_parts != all)
    return;
  unsigned n = 0;
  VOLDB_FOR_LIVE (e)
    n += e->vol != NULL;
  notify_send ("READY=1");
  notify_status ("serving %u volume%s", n, n == 1 ? "" : "s");
}

void
notify_stopping (void)
{
  notify_send ("STOPPING=1\nSTATUS=detaching volumes and stopping");
}
