/* SPDX-License-Identifier: GPL-2.0-or-later */
/* procedure.c: fencing one node on one LUN, the way every survivor does it.
 *
 *   1. READ KEYS: is the victim's key there, and ours?
 *   2. Ours gone though we registered on this LUN: we were fenced
 *      ourselves (a survivor on the other side of a partition got there
 *      first).  Stop: preempting now would fence the winner.
 *   3. The victim's key gone: fenced already (by us, earlier, or by
 *      another survivor): done.
 *   4. REGISTER AND IGNORE EXISTING KEY (idempotent), then PREEMPT (AND
 *      ABORT) the victim's key; we hold the reservation afterwards if the
 *      victim held it.
 * The daemon decides when and whom to fence (node/cowd/fencing.c); this
 * is the mechanism, synchronous, on a device from fence_dev_open or any
 * other fence_dev (the unit test drives it on a fake target).
 */
#include <config.h>

#include <stdio.h>

#include "fence-int.h"

enum fence_lun_result
fence_lun (struct fence_dev *dev, uint64_t my_key, uint64_t victim_key,
           bool was_registered, char *err, size_t errlen)
{
  int victim = fence_key_listed (dev, victim_key);
  int mine = victim < 0 ? -1 : fence_key_listed (dev, my_key);
  if (victim < 0 || mine < 0)
    goto failed;
  if (!mine && was_registered)
    {
      snprintf (err, errlen,
                "%s: this node's own key is gone: it was "
                "fenced itself",
                fence_dev_label (dev));
      return FENCE_LUN_SELF_FENCED;
    }
  if (!victim)
    return FENCE_LUN_ALREADY;
  if (fence_register (dev, my_key) < 0
      || fence_preempt (dev, my_key, victim_key) < 0)
    goto failed;
  return FENCE_LUN_FENCED;
failed:
  snprintf (err, errlen, "%s", fence_last_error (dev));
  return FENCE_LUN_ERROR;
}
