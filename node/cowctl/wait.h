/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wait.h: cowctl's progress display for long work (wait.c). */
#ifndef COWCTL_WAIT_H
#define COWCTL_WAIT_H

/* Show the hydration of volume name until it ends; the exit status. */
int wait_hydrated (const char *run_dir, const char *name);

#endif
