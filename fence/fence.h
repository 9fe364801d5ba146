/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fence.h: SCSI-3 persistent-reservation fencing, as Pacemaker's fence_scsi
 * does it (see FENCING in cowd(8)).
 *
 * Every node registers its own key on every shared LUN; the LUN carries a
 * WRITE EXCLUSIVE - REGISTRANTS ONLY reservation (type 5), so every
 * registered node may write and nobody else may.  A survivor fences a node
 * by preempting its key: PREEMPT AND ABORT where the target supports it,
 * plain PREEMPT where it answers ILLEGAL REQUEST (tgtd does).  If the
 * victim held the reservation, the preemptor holds it afterwards.  The
 * victim's next write gets UNIT ATTENTION 2A/03 and then RESERVATION
 * CONFLICT; its reads still work.
 *
 * A registration belongs to one I_T nexus (one iSCSI session, one
 * initiator port), not to a host: register on the same session that
 * writes, and register again (fence_register is idempotent) after every
 * re-login.
 *
 * Keys (key.c): the high 32 bits are the FNV-1a hash of the cluster name,
 * the low 32 bits the corosync node id, so fence_key ("prod", 3) is
 * 0xHHHHHHHH00000003 and a key read back from a LUN names its node.
 *
 * Devices: a libiscsi session owned by the caller (fence_dev_iscsi), or a
 * SCSI block or sg device through SG_IO (fence_dev_sg), e.g. an open-iscsi
 * /dev/disk/by-path/... LUN.  Every call is synchronous (fencing is a rare
 * control operation).  A UNIT ATTENTION is retried a few times.
 *
 * Errors: the calls return 0 or -1 with errno set (EACCES: reservation
 * conflict, EOPNOTSUPP: the device or target does not support the command,
 * EBUSY: another kind of reservation is held, ENOENT: our key is not
 * registered, EIO: anything else).  fence_last_error then gives one
 * sentence naming the device and the cause, for the caller to log once.
 * The library itself does not log.
 */
#ifndef COWHERD_FENCE_H
#define COWHERD_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reservation types (SPC-4, PERSISTENT RESERVE OUT TYPE field). */
#define FENCE_TYPE_WRITE_EXCLUSIVE_RO 5 /* registrants only: the one we use */

/* Keys */
uint64_t fence_key (const char *cluster_name, uint32_t nodeid);
uint32_t fence_key_nodeid (uint64_t key);
bool fence_key_in_cluster (uint64_t key, const char *cluster_name);

/* Devices */
struct fence_dev;
struct iscsi_context;

/* The context stays the caller's: it is used, never closed.  label names
 * the LUN in errors (e.g. "iscsi://10.0.0.1:3260/iqn.../1"). */
struct fence_dev *fence_dev_iscsi (struct iscsi_context *iscsi, int lun,
                                   const char *label);
/* fd: an open SCSI block device or /dev/sgN (O_RDWR); stays the caller's.
 * Fails (NULL, errno EOPNOTSUPP, sentence in err) when the device does not
 * take SG_IO, e.g. a loop device. */
struct fence_dev *fence_dev_sg (int fd, const char *label, char *err,
                                size_t errlen);
/* Open the LUN a volume names: iscsi://... logs in through libiscsi (with
 * login's initiator name and CHAP credentials), anything else is opened as
 * a SCSI block or sg device.  The device owns that session or descriptor
 * and fence_dev_free ends it.  NULL with one sentence in err. */
struct fence_login
{
  const char *initiator;       /* iSCSI initiator name */
  const char *user, *password; /* CHAP, or NULL */
  int timeout_s;               /* per command; 0: 5 s */
};
struct fence_dev *fence_dev_open (const char *uri,
                                  const struct fence_login *login, char *err,
                                  size_t errlen);
void fence_dev_free (struct fence_dev *dev);
/* The libiscsi session and LUN of an iSCSI device (NULL for SG_IO), for a
 * caller that must read or write on the nexus that registered. */
struct iscsi_context *fence_dev_iscsi_context (const struct fence_dev *dev,
                                               int *lun);
const char *fence_dev_label (const struct fence_dev *dev);

/* Operations; key is this node's key unless said otherwise. */
int fence_register (struct fence_dev *dev, uint64_t key);
int fence_reserve (struct fence_dev *dev, uint64_t key);
int fence_preempt (struct fence_dev *dev, uint64_t my_key, uint64_t victim_key);
int fence_unregister (struct fence_dev *dev, uint64_t key);
int fence_clear (struct fence_dev *dev, uint64_t key);

/* keys[] gets at most max keys; *n the number the target listed (more
 * than max means the list was cut). */
int fence_read_keys (struct fence_dev *dev, uint64_t *keys, size_t max,
                     size_t *n, uint32_t *generation);
/* Is key registered on dev?  1 yes, 0 no, -1 the READ KEYS failed. */
int fence_key_listed (struct fence_dev *dev, uint64_t key);
/* *held false: no reservation (holder and type 0). */
int fence_read_reservation (struct fence_dev *dev, uint64_t *holder, int *type,
                            bool *held);

/* Fence the node whose key is victim_key on one LUN (procedure.c): read
 * the keys; stop if our own key is gone though we registered here
 * (was_registered: we were fenced ourselves); done if the victim's key is
 * gone; else register and preempt.  On FENCE_LUN_ERROR and
 * FENCE_LUN_SELF_FENCED, err has the sentence. */
enum fence_lun_result
{
  FENCE_LUN_FENCED = 0,  /* preempted now */
  FENCE_LUN_ALREADY,     /* the victim's key was gone already */
  FENCE_LUN_SELF_FENCED, /* our own key is gone */
  FENCE_LUN_ERROR,
};
enum fence_lun_result fence_lun (struct fence_dev *dev, uint64_t my_key,
                                 uint64_t victim_key, bool was_registered,
                                 char *err, size_t errlen);

const char *fence_last_error (const struct fence_dev *dev);
const char *fence_type_name (int type);

#endif /* COWHERD_FENCE_H */
