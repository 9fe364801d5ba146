/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctl-usage.c: the one list of commands, shared by both ends.
 *
 * cowctl prints its help from this table and refuses a command that is
 * not in it before it looks for cowd (so `cowctl frobnicate` is a usage
 * error even with no cowd running); cowd serves exactly these commands
 * (ctl-cmds.c finds each handler by name, and a unit test checks that
 * every name here has one) and answers a malformed one with the usage
 * line below.  One list, so the help and the commands cannot drift.
 */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "ctl.h"

const struct ctl_command ctl_commands[] = {
  { "create",
    "create NAME --base BASE --cow COW [--chunk-size SIZE]\n"
    "         [--commit sync|flush|none] [--force] [--exclusive] [--buffered]"
    "\n         | create --from FILE|-",
    "format COW over BASE; record the volume;\n"
    "                               or one volume per line of FILE",
    false },
  { "attach",
    "attach NAME [--incoming] [--wait-owned SECS] [--accept-base-change]",
    "serve it; prints the NBD URI", false },
  { "detach", "detach NAME", "drain, commit, mark clean, stop serving", false },
  { "delete", "delete NAME", "forget a detached volume (data untouched)",
    false },
  { "list",
    "list [--owner NODE] [--state STATE] [--after NAME]\n"
    "         [--limit N] [PATTERN]",
    "the volumes this agent knows (all, or"
    " those\n                               that match)",
    false },
  { "status", "status NAME", "state, size, CoW chunks, epoch, statistics",
    false },
  { "stats", "stats NAME", "IO statistics", false },
  { "top", "top [--once] [-n ITERATIONS] [--interval SEC]",
    "live IO rates of the volumes served here", false },
  { "hydrate", "hydrate NAME [--rate MB/s] [--wait] | hydrate --cancel NAME",
    "copy what is left of the base into the CoW\n"
    "                               device in the background; or stop",
    false },
  { "unbase", "unbase NAME", "forget the base of a hydrated volume", false },
  { "snapshot", "snapshot NAME --cow DEVICE [--name SNAP]",
    "freeze the CoW layer as SNAP; continue on\n"
    "                               DEVICE, a new empty layer",
    false },
  { "snapshots", "snapshots NAME", "the layers: snapshots, chunks, times",
    false },
  { "rollback", "rollback NAME SNAP",
    "back to snapshot SNAP; frees the "
    "layers above",
    false },
  { "reset", "reset NAME", "empty the top layer: reads as what is below",
    false },
  { "merge", "merge NAME",
    "merge the top layer into the snapshot below it,"
    "\n                               online; progress in status",
    false },
  { "export",
    "export NAME --to DEVICE [--rate MB/s] [--no-wait]\n"
    "         | export NAME --cancel",
    "write the volume as it is now as a raw image\n"
    "                               to DEVICE (a file, a block device, an\n"
    "                               iscsi:// LUN) while it serves; or stop",
    false },
  { "debug", "debug dump", "write cowd's blackbox log to a file", false },
  { "help", "help", "this list", false },
  { "nodes", "nodes", "members, quorum, ring id", true },
  { "migrate", "migrate NAME --to NODE", "hand ownership to another node",
    true },
  { "fence",
    "fence status | fence NODE | fence confirm NODE\n"
    "         | fence probe NAME",
    "fencing state; fence a node; confirm a "
    "node is down;\n                               can this host write "
    "NAME's CoW LUN",
    true },
  { "handoff-times", "handoff-times", "ownership handoff times (ms)", true },
  { NULL, NULL, NULL, false },
};

const struct ctl_command *
ctl_command_find (const char *name)
{
  for (const struct ctl_command *c = ctl_commands; c->name; c++)
    if (strcmp (c->name, name) == 0)
      return c;
  return NULL;
}

static void
ctl_usage_section (struct strbuf *sb, bool cluster)
{
  for (const struct ctl_command *c = ctl_commands; c->name; c++)
    {
      if (c->cluster != cluster)
        continue;
      if (strlen (c->usage) <= 28)
        sb_printf (sb, "  %-28s %s\n", c->usage, c->summary);
      else
        sb_printf (sb, "  %s\n  %-28s %s\n", c->usage, "", c->summary);
    }
}

void
ctl_usage (struct strbuf *sb)
{
  sb_puts (sb, "volumes:\n");
  ctl_usage_section (sb, false);
  sb_puts (sb, "cluster:\n");
  ctl_usage_section (sb, true);
}
