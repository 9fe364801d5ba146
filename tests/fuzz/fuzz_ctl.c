/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz_ctl.c: a libFuzzer target for the control protocol's request
 * parser (ctl_parse in node/ctl/ctl-server.c).
 *
 * A request reaches cowd from any root process on the host, so the body
 * after libqb's header (u32 version, u32 flags, u32 argc, argc strings,
 * see ctl.h) must parse or be refused with a sentence, whatever the
 * bytes.  ctl_parse is static: this file includes ctl-server.c to reach
 * it, so the code fuzzed is the code cowd runs.  When a request parses,
 * argv holds exactly argc strings, each inside the copy of the body, and
 * argv[argc] is NULL.  Build and run: see tests/fuzz/fuzz.sh.
 */
#include "../../node/ctl/ctl-server.c"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *why = NULL;
  uint32_t vers = 0;
  struct ctl_req *r = ctl_parse (data, size, &vers, &why);
  if (!r)
    {
      FUZZ_CHECK (why && *why);
      return 0;
    }
  size_t slen = size - 12;
  FUZZ_CHECK (r->argc > 0 && r->argv[r->argc] == NULL);
  for (int i = 0; i < r->argc; i++)
    {
      FUZZ_CHECK (r->argv[i] >= r->strings && r->argv[i] < r->strings + slen);
      FUZZ_CHECK (r->argv[i] + strlen (r->argv[i]) < r->strings + slen);
    }
  free (r->argv);
  free (r->strings);
  free (r);
  return 0;
}
