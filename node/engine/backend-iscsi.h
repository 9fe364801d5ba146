/* SPDX-License-Identifier: GPL-2.0-or-later */
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
/* url as an iSCSI backend names itself (bk->uri: the port filled in, no
 * credentials), to free; NULL when it is not a valid iSCSI URL. */
char *backend_iscsi_uri (const char *url);
/* This host's initiator name: the configured one, else
 * iqn.2024-01.org.cowherd:HOSTNAME. */
void backend_iscsi_initiator (const char *configured, char *buf, size_t len);

#endif
