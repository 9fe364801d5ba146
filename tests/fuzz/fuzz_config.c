/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz_config.c: a libFuzzer target for cowd's configuration parser
 * (node/cowd/config.c: config_parse and the [cowd]/[iscsi] keys of
 * config_load_daemon), which voldb.c shares for volumes.conf.
 *
 * The files are written by operators and tools, so any bytes must give
 * either a loaded configuration or one sentence naming the file and line,
 * never a crash or a read out of bounds.  Each input is written to a
 * memfd and loaded through /proc/self/fd, the way cowd opens a path.  The
 * target defines the daemon's state (`cowd`) that config.c fills in; it
 * includes config.c so the code fuzzed is the code cowd runs.  Build and
 * run: see tests/fuzz/fuzz.sh.
 */
#define _GNU_SOURCE
#include "../../node/cowd/config.c"

#include <sys/mman.h>
#include <unistd.h>
#include "fuzz.h"

struct cowd cowd;

static void
fuzz_reset (void)
{
  char **strs[]
      = { &cowd.run_dir,      &cowd.state_dir,      &cowd.node_name,
          &cowd.cluster_name, &cowd.initiator_name, &cowd.fence_command,
          &cowd.chap_user,    &cowd.chap_password };
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    {
      free (*strs[i]);
      *strs[i] = NULL;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static int fd = -1;
  char path[64], err[512] = "";
  if (fd < 0)
    fd = memfd_create ("fuzz_config", 0);
  FUZZ_CHECK (fd >= 0 && ftruncate (fd, 0) == 0);
  FUZZ_CHECK (pwrite (fd, data, size, 0) == (ssize_t) size);
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  int r = config_load_daemon (path, err, sizeof err);
  FUZZ_CHECK (r == 0 || (r < 0 && strncmp (err, path, strlen (path)) == 0));
  FUZZ_CHECK (cowd.log_level >= 0 && cowd.log_level <= 7);
  fuzz_reset ();
  return 0;
}
