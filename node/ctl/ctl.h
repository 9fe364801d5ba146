/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control channel between cowctl and cowd, over libqb IPC.
 *
 * Service name: ctl_service_name(run_dir), "cowd-XXXXXXXX" where the hex
 * is the crc32c of the absolute run directory, so several cowd instances
 * run side by side on one machine and cowctl --run-dir DIR finds its own.
 *
 * Wire format (little-endian, after libqb's request/response headers):
 *   request:  qb_ipc_request_header { id = CTL_MSG_COMMAND, size }
 *             u32 version (1 to 3) | u32 flags (CTL_F_*) | u32 argc (at
 *             most CTL_ARGC_MAX) | argc NUL-terminated strings (argv[0]
 *             is the command, e.g. "status"; the rest are its arguments,
 *             unparsed); the whole request fits in CTL_MAX_MSG and in
 *             the connection's buffer, which the client chose when it
 *             connected (at least CTL_CONN_MIN: qb_ipcc_connect's size)
 *   answer, version 1 and 2: one response message
 *             qb_ipc_response_header { id = CTL_MSG_COMMAND, size, error }
 *             u32 version | i32 exit status (0 ok, 1 error, 2 usage)
 *             version 2 only: u32 code length (0 on success, at most
 *             CTL_CODE_MAX) | the error code's name (errcode.h), no NUL
 *             NUL-terminated text: a table, a sentence or JSON (CTL_F_JSON)
 *             The whole answer fits in the connection's buffer (these
 *             clients ask for CTL_MAX_MSG), or it is replaced by an error
 *             saying the cowctl is too old for an answer that size.
 *   answer, version 3: a stream of frames, each one response message of at
 *             most CTL_FRAME_MAX bytes (ctl-frame.c):
 *             qb_ipc_response_header | u32 version (3) | u32 kind
 *             (CTL_FRAME_*) | u32 sequence number (0, 1, 2, ...) | u32
 *             payload length | payload
 *             HEAD payload: i32 status | u32 code length | code | u64 text
 *               length (at most CTL_TEXT_MAX; the text has no NUL)
 *             DATA payload: 1 to CTL_FRAME_DATA bytes of the text, in order
 *             END payload:  u64 text length | u32 crc32c of the whole text
 *             cowd writes the frames from its loop as the channel takes
 *             them (ctl-server.c); cowctl reads to the END frame.
 * cowd answers in the version of the request, so an older cowctl keeps
 * working (version 1 gets no code; an answer too large for one message
 * is an error naming the cause); a request of an unknown version gets a
 * version 1 answer, status 2 and a sentence saying the versions differ,
 * which a newer cowctl turns into "cowd is older than this cowctl".
 * Every length is checked before it is read; a request that does not
 * parse gets status 2 and a sentence, never a crash.
 */
#ifndef COWD_CTL_H
#define COWD_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include <qb/qbloop.h>

#include "strbuf.h"
#include "errcode.h"

/* 2: answers carry an error code; 3: answers are streamed in frames. */
#define CTL_VERSION 3u
#define CTL_VERSION_MIN 1u
#define CTL_CODE_MAX 64
#define CTL_MSG_COMMAND 1
#define CTL_MAX_MSG (1024 * 1024)
#define CTL_ARGC_MAX 65536u
#define CTL_FRAME_MAX (128 * 1024)
/* The least a connection's rings hold (cowd enforces it): one frame.  A
 * client asks for more to send larger requests (ctl_connect); cowd zeroes
 * and maps the rings at every connection (on its control channel's
 * thread), 3 MiB of them at 1 MiB a ring. */
#define CTL_CONN_MIN CTL_FRAME_MAX
#define CTL_FRAME_DATA (CTL_FRAME_MAX - 64)
#define CTL_TEXT_MAX (1024u * 1024 * 1024)
#define CTL_FRAME_HEAD 1u
#define CTL_FRAME_DATA_KIND 2u
#define CTL_FRAME_END 3u
#define CTL_F_JSON 0x1u

#define CTL_EXIT_OK 0
#define CTL_EXIT_ERROR 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_UNREACHABLE 3 /* cowctl only: no cowd, or not allowed */

struct ctl_req;

/* --- both ends (ctl-usage.c): the commands cowd serves --- */
struct ctl_command
{
  const char *name;    /* argv[0] */
  const char *usage;   /* "attach NAME [--incoming]" */
  const char *summary; /* one line for help */
  bool cluster;        /* a cluster command */
};
extern const struct ctl_command ctl_commands[]; /* ends with name NULL */
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
/* ctl_reply (status 0) of text's buffer, moved into the answer instead of
 * copied when the client streams (version 3); text is left empty. */
void ctl_reply_take (struct ctl_req *req, struct strbuf *text);
void ctl_reply_error (struct ctl_req *req, int code, const char *text);

/* --- cowctl side (ctl-client.c) --- */
struct ctl_answer
{
  int status;                  /* CTL_EXIT_* */
  char code[CTL_CODE_MAX + 1]; /* "" on success; a cow_err_name */
  char *text;                  /* malloc'd, NUL-terminated */
  size_t len;                  /* strlen (text) */
  uint32_t version;            /* the answer's protocol version */
  char why[200];               /* why it did not parse (-EPROTO) */
};
/* Send argv to the cowd of run_dir and wait for the whole answer.
 * Returns 0, or -errno when cowd is unreachable, -EPROTO when the answer
 * does not parse (ans->why says why), -EPROTONOSUPPORT when cowd is
 * older than this cowctl. */
int ctl_call (const char *run_dir, unsigned flags, int argc, char **argv,
              struct ctl_answer *ans, int timeout_ms);
/* The same over one connection for several calls, one after another:
 * every connection costs cowd the set-up of libqb's three shared-memory
 * rings (a quarter of the creating host's loop during bench/scale's
 * creates, with one connection of 1 MiB rings per request).
 * ctl_connect: a connection for requests of up to max_request bytes
 * (CTL_MAX_MSG at most), or NULL with -errno in *err.  Its rings hold
 * one frame or one such request, whichever is larger: ctl_call sizes
 * them to its request; a request larger than the connection's is
 * -E2BIG. */
struct ctl_conn;
struct ctl_conn *ctl_connect (const char *run_dir, size_t max_request,
                              int *err);
int ctl_call_on (struct ctl_conn *conn, unsigned flags, int argc, char **argv,
                 struct ctl_answer *ans, int timeout_ms);
void ctl_disconnect (struct ctl_conn *conn);

/* --- framing of version 3 answers (ctl-frame.c) --- */
struct ctl_stream
{
  int status;
  char code[CTL_CODE_MAX + 1];
  struct strbuf text; /* its own: moved in */
  size_t len, pos;
  uint32_t seq, crc;
  int stage; /* 0 head, 1 data, 2 end, 3 done */
};
/* A stream of text's buffer, moved in, not copied (text is left empty):
 * a list of 100,000 volumes is 30 MB, and copying it was one stretch of
 * 108-152 ms on a paravirtualised host (its pages faulted in). */
void ctl_stream_init_take (struct ctl_stream *s, int status, const char *code,
                           struct strbuf *text);
/* Write the next frame into buf (CTL_FRAME_MAX bytes): its size, or 0
 * when the END frame was the last one written. */
size_t ctl_stream_next (struct ctl_stream *s, uint8_t *buf);
void ctl_stream_free (struct ctl_stream *s);

struct ctl_unframe
{
  struct ctl_answer *ans; /* filled as frames arrive */
  int stage;              /* 0 first, 1 data, 2 done, -1 failed */
  uint32_t seq, crc;
  uint64_t total;
  char why[200];
};
/* Take one response message: 1 when the answer is complete, 0 when more
 * frames must follow, -EPROTO with u->why set, -ENOMEM. */
int ctl_unframe_feed (struct ctl_unframe *u, const uint8_t *msg, size_t len);

#endif /* COWD_CTL_H */
