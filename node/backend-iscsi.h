/* backend-iscsi.h: what the fencing code needs of an iSCSI backend: the
 * long-lived session its writes go through (a SCSI-3 registration belongs
 * to that session) and the LUN. */
#ifndef COWD_BACKEND_ISCSI_H
#define COWD_BACKEND_ISCSI_H

#include <stddef.h>

struct backend;
struct iscsi_context;

struct iscsi_context *backend_iscsi_context (struct backend *bk);
int backend_iscsi_lun (struct backend *bk);
/* This host's initiator name: the configured one, else
 * iqn.2024-01.org.cowherd:HOSTNAME. */
void backend_iscsi_initiator (const char *configured, char *buf,
                              size_t len);

#endif
