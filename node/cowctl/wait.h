/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wait.h: cowctl's progress display for long work (wait.c). */
#ifndef COWCTL_WAIT_H
#define COWCTL_WAIT_H

#include <stdbool.h>
#include <stddef.h>

/* Show the hydration of volume name until it ends; the exit status. */
int wait_hydrated (const char *run_dir, const char *name);

/* One poll of `status NAME --json`: the object called key ("hydration",
 * "export").  0; 1 when the answer has no such object (or an error);
 * -errno when cowd could not be asked. */
struct progress
{
  char state[16];
  double percent, rate, eta;
  unsigned long long done, total;
  char error[128];
  char *obj; /* the object's text, malloc'd */
};
int wait_poll (const char *run_dir, const char *name, const char *key,
               struct progress *pg);
/* One progress line (or the bar on a terminal), label first. */
void wait_show (const char *label, const struct progress *pg, bool tty);
/* A number or a string member of a JSON object's text. */
double wait_num (const char *obj, const char *key);
void wait_str (const char *obj, const char *key, char *out, size_t len);

#endif
