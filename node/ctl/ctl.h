/* The control channel between cowctl and cowd, over libqb IPC.
 *
 * Service name: ctl_service_name(run_dir), "cowd-XXXXXXXX" where the hex
 * is the crc32c of the absolute run directory, so several cowd instances
 * run side by side on one machine and cowctl --run-dir DIR finds its own.
 *
 * Wire format (little-endian, after libqb's request/response headers):
 *   request:  qb_ipc_request_header { id = CTL_MSG_COMMAND, size }
 *             u32 version (CTL_VERSION) | u32 flags (CTL_F_*) | u32 argc
 *             argc NUL-terminated strings (argv[0] is the command, e.g.
 *             "status"; the rest are its arguments, unparsed)
 *   response: qb_ipc_response_header { id = CTL_MSG_COMMAND, size, error }
 *             u32 version | i32 exit status (0 ok, 1 error, 2 usage)
 *             NUL-terminated text: a table, a sentence or JSON (CTL_F_JSON)
 * Every length is checked before it is read; a request that does not
 * parse gets status 2 and a sentence, never a crash.
 */
#ifndef COWD_CTL_H
#define COWD_CTL_H

#include <stdint.h>
#include <stddef.h>

#include <qb/qbloop.h>

#include "strbuf.h"

#define CTL_VERSION 1u
#define CTL_MSG_COMMAND 1
#define CTL_MAX_MSG (1024 * 1024)
#define CTL_F_JSON 0x1u

#define CTL_EXIT_OK 0
#define CTL_EXIT_ERROR 1
#define CTL_EXIT_USAGE 2

struct ctl_req;

/* Fill buf (at least 32 bytes) with the IPC service name for run_dir. */
void ctl_service_name (const char *run_dir, char *buf, size_t len);

/* --- cowd side (ctl-server.c) --- */
/* The program's handler of one request.  It must eventually call
 * ctl_reply exactly once, at once or later (e.g. after a flush or a
 * handoff completes). */
typedef void ctl_dispatch_fn (struct ctl_req *req);

/* Start serving the control channel of run_dir on loop; every request
 * goes to fn. */
int ctl_server_start (qb_loop_t *loop, const char *run_dir,
                      ctl_dispatch_fn *fn);
void ctl_server_stop (void);

int ctl_req_argc (const struct ctl_req *req);
char **ctl_req_argv (const struct ctl_req *req);
unsigned ctl_req_flags (const struct ctl_req *req);
/* Send the reply and free req.  If the client went away meanwhile, the
 * reply is dropped silently. */
void ctl_reply (struct ctl_req *req, int status, const char *text);

/* --- cowctl side (ctl-client.c) --- */
/* Send argv to the cowd of run_dir, wait, and return the exit status; the
 * text goes to *out (malloc'd).  Returns -errno when cowd is unreachable. */
int ctl_call (const char *run_dir, unsigned flags, int argc, char **argv,
              char **out, int timeout_ms);

#endif /* COWD_CTL_H */
