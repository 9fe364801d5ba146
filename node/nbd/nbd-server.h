/* SPDX-License-Identifier: GPL-2.0-or-later */
/* NBD server: one unix socket (mode 0600) per volume, newstyle fixed
 * handshake, structured replies, every connection on cowd's main loop.
 * See nbd-server.c and the NBD protocol document. */
#ifndef COWD_NBD_SERVER_H
#define COWD_NBD_SERVER_H

#include <stddef.h>

struct volume;
struct nbd_export;

/* Listen on sock_path for clients of volume v.  Returns NULL and one
 * sentence in err on failure. */
struct nbd_export *nbd_export_new (struct volume *v, const char *sock_path,
                                   char *err, size_t errlen);
/* Stop listening, close every connection, unlink the socket. */
void nbd_export_free (struct nbd_export *e);
/* A client that has not chosen an export (NBD_OPT_GO / EXPORT_NAME) this
 * many ms after connecting is dropped; 0 restores the default (30 s). */
void nbd_set_handshake_timeout (unsigned ms);
unsigned nbd_export_connections (const struct nbd_export *e);
const char *nbd_export_socket (const struct nbd_export *e);

#endif /* COWD_NBD_SERVER_H */
