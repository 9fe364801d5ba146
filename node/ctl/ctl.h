/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control channel between cowctl and cowd, over libqb IPC.
 *
 * Service name: ctl_service_name(run_dir), "cowd-XXXXXXXX" where the hex
 * is the crc32c of the absolute run directory, so several cowd instances
 * run side by side on one machine and cowctl --run-dir DIR finds its own.
 *
 * Wire format (little-endian, after libqb's request/response headers):
 *   request:  qb_ipc_request_header { id = CTL_MSG_COMMAND, size }
 *             u32 version (1 or 2) | u32 flags (CTL_F_*) | u32 argc
 *             argc NUL-terminated strings (argv[0] is the command, e.g.
 *             "status"; the rest are its arguments, unparsed)
 *   response: qb_ipc_response_header { id = CTL_MSG_COMMAND, size, error }
 *             u32 version | i32 exit status (0 ok, 1 error, 2 usage)
 *             version 2 only: u32 code length (0 on success, at most
 *             CTL_CODE_MAX) | the error code's name (errcode.h), no NUL
 *             NUL-terminated text: a table, a sentence or JSON (CTL_F_JSON)
 * cowd answers in the version of the request, so a version 1 cowctl keeps
 * working (it gets no code); a request of an unknown version gets a
 * version 1 answer, status 2 and a sentence saying the versions differ.
 * Every length is checked before it is read; a request that does not
 * parse gets a version 1 answer, status 2 and a sentence, never a crash.
 */
#ifndef COWD_CTL_H
#define COWD_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include <qb/qbloop.h>

#include "strbuf.h"
#include "errcode.h"

#define CTL_VERSION 2u          /* 2: answers carry an error code */
#define CTL_VERSION_MIN 1u
#define CTL_CODE_MAX 64
#define CTL_MSG_COMMAND 1
#define CTL_MAX_MSG (1024 * 1024)
#define CTL_F_JSON 0x1u

#define CTL_EXIT_OK 0
#define CTL_EXIT_ERROR 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_UNREACHABLE 3  /* cowctl only: no cowd, or not allowed */

struct ctl_req;

/* --- both ends (ctl-usage.c): the commands cowd serves --- */
struct ctl_command
{
  const char *name;             /* argv[0] */
  const char *usage;            /* "attach NAME [--incoming]" */
  const char *summary;          /* one line for help */
  bool cluster;                 /* a cluster command */
};
extern const struct ctl_command ctl_commands[];  /* ends with name NULL */
const struct ctl_command *ctl_command_find (const char *name);
/* Append the list of commands, in two sections, to sb. */
void ctl_usage (struct strbuf *sb);

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
 * reply is dropped silently.  ctl_reply answers success (status 0);
 * ctl_reply_error answers failure with a code (COW_E_*, or a negative
 * errno mapped by cow_err_code) and its sentence: status 2 for
 * COW_E_USAGE, else 1. */
void ctl_reply (struct ctl_req *req, int status, const char *text);
void ctl_reply_error (struct ctl_req *req, int code, const char *text);

/* --- cowctl side (ctl-client.c) --- */
struct ctl_answer
{
  int status;                   /* CTL_EXIT_* */
  char code[CTL_CODE_MAX + 1];  /* "" on success; a cow_err_name */
  char *text;                   /* malloc'd */
};
/* Send argv to the cowd of run_dir and wait for the answer.  Returns 0,
 * or -errno when cowd is unreachable (or the answer does not parse:
 * -EPROTO). */
int ctl_call (const char *run_dir, unsigned flags, int argc, char **argv,
              struct ctl_answer *ans, int timeout_ms);

#endif /* COWD_CTL_H */
