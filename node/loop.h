/* cowd's single event loop (libqb's qb_loop), shared by every subsystem. */
#ifndef COWD_LOOP_H
#define COWD_LOOP_H

#include <qb/qbloop.h>

qb_loop_t *cowd_loop (void);
void cowd_loop_set (qb_loop_t *l);

#endif
