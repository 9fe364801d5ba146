/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_log.c: common/cowlog.h, the qb_log every file of cowd uses.
 * Two threads log at once into a libqb target of the test's own, which
 * counts the messages: each of them must arrive, whole.  Through libqb's
 * own qb_log (without the header's lock) this loses messages: libqb
 * drops one that a thread logs while another is inside the logger. */
#include <config.h>

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cowlog.h"

#define PER_THREAD 20000

static unsigned long counted[2];
static unsigned long garbled;

/* The target: runs inside the logger, so under the header's lock. */
static void
count_msg (int32_t t, struct qb_log_callsite *cs, struct timespec *ts,
           const char *msg)
{
  (void) t;
  (void) cs;
  (void) ts;
  int who, n;
  if (sscanf (msg, "thread %d message %d", &who, &n) == 2 && who >= 0
      && who < 2)
    counted[who]++;
  else
    garbled++;
}

static void *
log_many (void *arg)
{
  int who = *(int *) arg;
  for (int i = 0; i < PER_THREAD; i++)
    qb_log (LOG_INFO, "thread %d message %d", who, i);
  return NULL;
}

START_TEST (test_two_threads)
{
  qb_log_init ("check_log", LOG_USER, LOG_INFO);
  qb_log_ctl (QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, QB_FALSE);
  qb_log_ctl (QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_FALSE);
  qb_log_ctl (QB_LOG_BLACKBOX, QB_LOG_CONF_ENABLED, QB_FALSE);
  int32_t t = qb_log_custom_open (count_msg, NULL, NULL, NULL);
  ck_assert_int_ge (t, 0);
  qb_log_filter_ctl (t, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", LOG_DEBUG);
  qb_log_ctl (t, QB_LOG_CONF_ENABLED, QB_TRUE);

  pthread_t th[2];
  int ids[2] = { 0, 1 };
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq (pthread_create (&th[i], NULL, log_many, &ids[i]), 0);
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq (pthread_join (th[i], NULL), 0);

  ck_assert_uint_eq (garbled, 0);
  ck_assert_uint_eq (counted[0], PER_THREAD);
  ck_assert_uint_eq (counted[1], PER_THREAD);
  qb_log_fini ();
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("cowlog");
  TCase *tc = tcase_create ("threads");
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_two_threads);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}
