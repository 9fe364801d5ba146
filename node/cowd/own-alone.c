/* SPDX-License-Identifier: GPL-2.0-or-later */
/* own-alone.c: ownership for a standalone cowd (see struct own_ops in
 * cowd.h).  Nobody else writes the volumes it serves: attaching a volume
 * makes it this host's (voldb_attach_async takes it over once open), detaching
 * commits and marks it clean.  No table, no waits, no fencing hooks. */
#include <config.h>

#include "cowd.h"

static int
own_alone_attach (struct vol_entry *e, bool incoming, voldb_attach_fn *done,
                  void *opaque, char *err, size_t errlen)
{
  (void) incoming; /* nobody to hand it over */
  return voldb_attach_async (e, done, opaque, err, errlen);
}

static void
own_alone_defined (struct vol_entry *const *e, size_t n)
{
  (void) e, (void) n;
}

static bool
own_alone_facts (const struct vol_entry *e, struct own_facts *f)
{
  (void) e, (void) f;
  return false;
}

const struct own_ops own_alone_ops = {
  .attach = own_alone_attach,
  .detach = voldb_detach,
  .defined = own_alone_defined,
  .facts = own_alone_facts,
};
