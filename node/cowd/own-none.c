/* SPDX-License-Identifier: GPL-2.0-or-later */
/* own-none.c: the cluster side of a cowd built without corosync: joining
 * a cluster fails with a sentence, and there are no cluster commands
 * (cmds_dispatch answers them as not available).  Built instead of own.c,
 * fencing.c and ctl-cluster.c. */
#include <config.h>

#include <stdio.h>

#include "cowd.h"

int
own_start (char *err, size_t errlen)
{
  snprintf (err, errlen,
            "this cowd was built without corosync; run it "
            "with --standalone");
  return -1;
}

void
own_stop (void)
{
}

const struct cmd *const cluster_cmds = NULL;
const size_t cluster_ncmds = 0;
