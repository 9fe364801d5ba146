/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fence-int.h: libcowfence's inside: the transport interface between the
 * logic in pr.c and the two transports (pr-iscsi.c, pr-sg.c), and the pure
 * encoders and decoders the unit test reaches without a device.
 *
 * A transport sends one PERSISTENT RESERVE OUT or IN command and reports
 * what came back in a struct fence_status: either the SCSI status with the
 * decoded sense, or a transport failure (no status at all) with a cause.
 * Retries, fallbacks and error sentences are pr.c's business.
 */
#ifndef COWHERD_FENCE_INT_H
#define COWHERD_FENCE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "byteorder.h"
#include "fence.h"

/* PERSISTENT RESERVE OUT service actions (SPC-4 6.16.2). */
enum fence_prout_sa
{
  FENCE_SA_REGISTER = 0,
  FENCE_SA_RESERVE = 1,
  FENCE_SA_RELEASE = 2,
  FENCE_SA_CLEAR = 3,
  FENCE_SA_PREEMPT = 4,
  FENCE_SA_PREEMPT_AND_ABORT = 5,
  FENCE_SA_REGISTER_IGNORE = 6,
};

/* PERSISTENT RESERVE IN service actions (SPC-4 6.15.1). */
enum fence_prin_sa
{
  FENCE_SA_READ_KEYS = 0,
  FENCE_SA_READ_RESERVATION = 1,
};

#define FENCE_OP_PRIN 0x5e
#define FENCE_OP_PROUT 0x5f
#define FENCE_PROUT_PARAM_LEN 24
#define FENCE_CDB_LEN 10

#define FENCE_STATUS_GOOD 0x00
#define FENCE_STATUS_CHECK_CONDITION 0x02
#define FENCE_STATUS_BUSY 0x08
#define FENCE_STATUS_RESERVATION_CONFLICT 0x18

#define FENCE_SENSE_NOT_READY 0x2
#define FENCE_SENSE_ILLEGAL_REQUEST 0x5
#define FENCE_SENSE_UNIT_ATTENTION 0x6

struct fence_status
{
  bool transport_failed; /* no SCSI status: see err and cause */
  int err;               /* errno for a transport failure */
  char cause[160];
  int status; /* SCSI status byte */
  bool have_sense;
  uint8_t key, asc, ascq;
};

struct fence_prout
{
  enum fence_prout_sa sa;
  int type;
  uint64_t key;    /* RESERVATION KEY */
  uint64_t sa_key; /* SERVICE ACTION RESERVATION KEY */
};

struct fence_ops
{
  int (*prout) (struct fence_dev *dev, const struct fence_prout *p,
                struct fence_status *st);
  /* *got: bytes of data received. */
  int (*prin) (struct fence_dev *dev, enum fence_prin_sa sa, uint8_t *buf,
               size_t len, size_t *got, struct fence_status *st);
  void (*free) (struct fence_dev *dev);
};

struct fence_dev
{
  const struct fence_ops *ops;
  char *label;
  char err[512];
  struct iscsi_context *iscsi; /* pr-iscsi.c */
  int lun;
  int fd;     /* pr-sg.c */
  bool owned; /* made by fence_dev_open: its session / fd ends with it */
};

/* open.c: end the session or close the descriptor of an owned device. */
void fence_dev_release (struct fence_dev *dev);

/* pr.c */
struct fence_dev *fence_dev_new (const struct fence_ops *ops,
                                 const char *label);
void fence_status_str (const struct fence_status *st, char *buf, size_t len);
int fence_parse_keys (const uint8_t *buf, size_t len, uint64_t *keys,
                      size_t max, size_t *n, uint32_t *generation);
int fence_parse_reservation (const uint8_t *buf, size_t len, uint64_t *holder,
                             int *type, bool *held);

/* pr-sg.c: pure CDB, parameter-list and sense codecs. */
void fence_sg_prout_cdb (uint8_t cdb[FENCE_CDB_LEN],
                         const struct fence_prout *p);
void fence_sg_prout_params (uint8_t params[FENCE_PROUT_PARAM_LEN],
                            const struct fence_prout *p);
void fence_sg_prin_cdb (uint8_t cdb[FENCE_CDB_LEN], enum fence_prin_sa sa,
                        uint16_t alloc_len);
bool fence_sense_parse (const uint8_t *sb, size_t len, struct fence_status *st);

#endif /* COWHERD_FENCE_INT_H */
