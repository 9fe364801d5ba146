/* cowd's single event loop (libqb's qb_loop), shared by every subsystem. */
#ifndef COWD_LOOP_H
#define COWD_LOOP_H

#include <qb/qbloop.h>

qb_loop_t *cowd_loop (void);
void cowd_loop_set (qb_loop_t *l);

/* Call fn(data) from the main loop soon (next wakeup), never from inside
 * the caller.  Returns 0 or -errno.  See defer.c. */
int cowd_defer (void (*fn) (void *data), void *data);

#endif
