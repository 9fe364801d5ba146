/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Private to cluster/: the wire messages and the table state machine. */
#ifndef COWHERD_CLUSTER_INT_H
#define COWHERD_CLUSTER_INT_H

#include "cluster.h"
#include "strmap.h"

/* 2: the table travels in SYNC_PIECEs (SYNC_DATA retired).
 * 3: definitions carry the CoW device's VPD identity.
 * 4: SYNC_HAVE and SYNC_STATES (a joiner that has the definitions gets
 *    only the states).
 * 5: the bounce count travels in both kinds of piece.
 * 6: HANDOFF_REFUSED. */
#define CL_MSG_VERSION 6
#define CL_HDR_SIZE 16

/* Message types: never renumbered or reused; a retired one stays a no-op. */
enum cl_msg_type
{
  CL_MSG_NOP = 0,
  CL_MSG_DEFINE = 1,
  CL_MSG_UNDEFINE = 2,
  CL_MSG_ACQUIRE = 3,
  CL_MSG_HANDOFF = 4,
  CL_MSG_RELEASE = 5,
  CL_MSG_MIGRATE = 6,
  CL_MSG_FENCE_CONFIRM = 7,
  CL_MSG_SYNC_MARK = 8,
  CL_MSG_SYNC_DATA = 9,        /* retired in version 2: a no-op */
  CL_MSG_FENCED = 10,          /* u32 node: fenced by the sender */
  CL_MSG_SYNC_PIECE = 11,      /* a piece of the table for a joiner */
  CL_MSG_DEFINE_MANY = 12,     /* many DEFINEs in the piece encoding */
  CL_MSG_SYNC_REQUEST = 13,    /* a member's table is stale: send it one */
  CL_MSG_SYNC_HAVE = 14,       /* a joiner's definitions: count and digest */
  CL_MSG_SYNC_STATES = 15,     /* a piece of the table without definitions */
  CL_MSG_HANDOFF_REFUSED = 16, /* the owner cannot hand over: u32 to, errno */
};
#define CL_MSG_LAST CL_MSG_HANDOFF_REFUSED

/* A SYNC_PIECE stays below this many bytes, header and checksum included:
 * well inside what CPG is built for (corosync fragments every message
 * into packets of the network's MTU and holds it whole until delivery). */
#define CL_PIECE_MAX (16 * 1024)

/* A decoded message (host order).  Which fields matter depends on type. */
struct cl_msg
{
  uint16_t type;
  uint64_t time_ms;          /* sender's wall clock, for bounce windows */
  struct cluster_voldef def; /* DEFINE; def.name for the others */
  uint32_t node;             /* HANDOFF/MIGRATE: to; FENCE_CONFIRM, FENCED */
  uint64_t generation;
  uint32_t error; /* HANDOFF_REFUSED: the owner's errno */
  /* SYNC_PIECE: piece number `piece` (from 0) of a table of `total`
   * volumes; `last` on the final one. */
  struct cluster_vol *vols;
  uint32_t nvols;
  uint32_t piece, total;
  bool last;
  /* SYNC_HAVE: the sender's definitions; SYNC_STATES: the table's (the
   * definitions the states go with). */
  struct cluster_digest digest;
};

/* msg.c: 0 / -EINVAL (malformed) / -EPROTONOSUPPORT (other version);
 * an unknown type decodes as NOP.  encode returns a malloc'd buffer. */
int cl_msg_decode (const void *buf, size_t len, struct cl_msg *m);
void *cl_msg_encode (const struct cl_msg *m, size_t *len);
void cl_msg_free (struct cl_msg *m);
/* The type of a message of this version (its length checked), without
 * decoding it; -1 otherwise. */
int cl_msg_peek_type (const void *buf, size_t len);
/* The piece number and the table's total of a SYNC_PIECE or SYNC_STATES
 * (its length checked so far, not its checksum); -1 otherwise. */
int cl_msg_peek_piece (const void *buf, size_t len, uint32_t *piece,
                       uint32_t *total);
/* The bytes one volume takes in a SYNC_PIECE, in a SYNC_STATES. */
size_t cl_msg_piece_vol_size (const struct cluster_vol *v);
size_t cl_msg_states_vol_size (const struct cluster_vol *v);
#define CL_PIECE_OVERHEAD (CL_HDR_SIZE + 16 + 4)
#define CL_STATES_OVERHEAD (CL_PIECE_OVERHEAD + 16)
/* A SYNC_STATES piece holds at most this many volumes: a joiner decodes
 * a piece in one step of its loop, and each volume costs it a lookup of
 * its own definition and an insert (a piece of 16 KiB would be 1,300
 * volumes and 10 ms). */
#define CL_STATES_VOLS_MAX 256

/* table.c: the deterministic state machine. */
struct cl_table
{
  struct cluster_vol *vols;
  size_t n, cap;
  uintptr_t backed; /* vols is backed below this address (table.c) */
  /* The digest of the definitions indexed (cluster_digest_add). */
  struct cluster_digest digest;
  /* Indexes (index + 1 as the item): by name, by CoW device as named. */
  struct strmap by_name, by_cow, by_ident;
};

struct cl_effects
{
  const struct cluster_callbacks *cb;
  void *ud;
  uint32_t local; /* this node, to route callbacks */
};

void cl_table_apply (struct cl_table *t, uint32_t sender,
                     const struct cl_msg *m, const struct cl_effects *fx);
/* The i-th definition of DEFINE_MANY m, applied as the DEFINE it stands
 * for (cpg.c applies a DEFINE_MANY a definition at a time). */
void cl_table_define_nth (struct cl_table *t, uint32_t sender,
                          const struct cl_msg *m, uint32_t i,
                          const struct cl_effects *fx);
void cl_table_member_left (struct cl_table *t, uint32_t node, bool node_down,
                           const struct cl_effects *fx);
struct cluster_vol *cl_table_find (struct cl_table *t, const char *name);
void cl_table_clear (struct cl_table *t);
/* Append v (a name not in t yet, from a state transfer); NULL when out
 * of memory or the name or CoW device is there already. */
struct cluster_vol *cl_table_add (struct cl_table *t,
                                  const struct cluster_vol *v);
/* Room for n volumes: the array and the indexes grow once, not in
 * doublings of O(n) each while a transfer arrives.  0 or -1. */
int cl_table_reserve (struct cl_table *t, size_t n);

#define CL_BOUNCE_LIMIT 6
#define CL_BOUNCE_WINDOW_MS 10000

#endif
