/* SPDX-License-Identifier: GPL-2.0-or-later */
/* check_ctl.c: the control protocol's answers, both versions.
 *
 * A child process serves the control channel (libcowctl's server on a
 * qb_loop) with a dispatch function that answers "ok" with success and
 * anything else with COW_E_NO_SUCH_VOLUME.  The parent asks it:
 *   - through ctl_call (version 2): the code arrives with the sentence;
 *   - as a version 1 cowctl would (raw libqb IPC): the answer is version 1,
 *     status then text, no code field, so an old cowctl keeps working;
 *   - with version 3: a version 1 answer, status 2, the sentence that the
 *     versions differ;
 *   - with a request whose argument count lies: status 2, no crash.
 */
#include <config.h>

#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qb/qbipcc.h>
#include <qb/qbloop.h>

#include "byteorder.h"
#include "ctl.h"

static char run_dir[64];
static pid_t server;

static void
serve (struct ctl_req *req)
{
  char **argv = ctl_req_argv (req);
  if (strcmp (argv[0], "ok") == 0)
    ctl_reply (req, 0, "fine\n");
  else
    ctl_reply_error (req, COW_E_NO_SUCH_VOLUME, "volume x does not exist");
}

static void
setup (void)
{
  strcpy (run_dir, "/tmp/check_ctl.XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (run_dir));
  int p[2];
  ck_assert_int_eq (pipe (p), 0);
  server = fork ();
  ck_assert_int_ge (server, 0);
  if (server == 0)
    {
      qb_loop_t *l = qb_loop_create ();
      if (ctl_server_start (l, run_dir, serve) < 0)
        _exit (1);
      if (write (p[1], "", 1) != 1)
        _exit (1);
      qb_loop_run (l);
      _exit (0);
    }
  char c;
  ck_assert_int_eq (read (p[0], &c, 1), 1);
  close (p[0]);
  close (p[1]);
}

static void
teardown (void)
{
  kill (server, SIGKILL);
  waitpid (server, NULL, 0);
  rmdir (run_dir);
}

/* Send a raw request (version, argc as given, the strings) and return
 * the answer's length; the answer in resp. */
static ssize_t
raw_call (uint32_t version, uint32_t argc, const char *strings, size_t slen,
          uint8_t *resp, size_t resp_len)
{
  char name[64];
  ctl_service_name (run_dir, name, sizeof name);
  qb_ipcc_connection_t *c = qb_ipcc_connect (name, CTL_MAX_MSG);
  ck_assert_ptr_nonnull (c);
  struct qb_ipc_request_header h = { .id = CTL_MSG_COMMAND };
  uint8_t msg[256];
  h.size = (int32_t) (sizeof h + 12 + slen);
  memcpy (msg, &h, sizeof h);
  le32_put (msg + sizeof h, version);
  le32_put (msg + sizeof h + 4, 0);
  le32_put (msg + sizeof h + 8, argc);
  memcpy (msg + sizeof h + 12, strings, slen);
  struct iovec iov = { msg, (size_t) h.size };
  ssize_t r = qb_ipcc_sendv_recv (c, &iov, 1, resp, resp_len, 5000);
  qb_ipcc_disconnect (c);
  return r;
}

/* A version 2 call: the code with the sentence; success without one. */
static void
expect_v2_code (void)
{
  struct ctl_answer a = { 0 };
  char *argv[] = { (char *) "status", (char *) "x" };
  ck_assert_int_eq (ctl_call (run_dir, 0, 2, argv, &a, 5000), 0);
  ck_assert_int_eq (a.status, CTL_EXIT_ERROR);
  ck_assert_str_eq (a.code, "no-such-volume");
  ck_assert_str_eq (a.text, "volume x does not exist");
  free (a.text);
  char *ok[] = { (char *) "ok" };
  struct ctl_answer b = { 0 };
  ck_assert_int_eq (ctl_call (run_dir, 0, 1, ok, &b, 5000), 0);
  ck_assert_int_eq (b.status, 0);
  ck_assert_str_eq (b.code, "");
  ck_assert_str_eq (b.text, "fine\n");
  free (b.text);
}

START_TEST (test_v2_code)
{
  expect_v2_code ();
}
END_TEST

/* A raw request answered in version 1 with status and exactly text. */
static void
expect_v1 (uint32_t version, uint32_t argc, const char *strings,
           size_t slen, int status, const char *text)
{
  uint8_t resp[4096];
  ssize_t r = raw_call (version, argc, strings, slen, resp, sizeof resp);
  size_t h = sizeof (struct qb_ipc_response_header);
  ck_assert_int_eq (r, (ssize_t) (h + 8 + strlen (text) + 1));
  ck_assert_uint_eq (le32_get (resp + h), 1);
  ck_assert_uint_eq (le32_get (resp + h + 4), (uint32_t) status);
  ck_assert_str_eq ((char *) resp + h + 8, text);
}

START_TEST (test_v1_client)
{
  expect_v1 (1, 2, "status\0x", 9, CTL_EXIT_ERROR, "volume x does not exist");
}
END_TEST

START_TEST (test_future_version)
{
  expect_v1 (3, 1, "ok", 3, CTL_EXIT_USAGE, "unsupported control protocol "
             "version (cowctl and cowd differ)");
}
END_TEST

START_TEST (test_bad_argc)
{
  expect_v1 (2, 5, "ok", 3, CTL_EXIT_USAGE, "malformed request (argument "
             "count)");
  expect_v2_code ();            /* and the server still answers */
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("ctl");
  TCase *tc = tcase_create ("answers");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_v2_code);
  tcase_add_test (tc, test_v1_client);
  tcase_add_test (tc, test_future_version);
  tcase_add_test (tc, test_bad_argc);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_set_fork_status (sr, CK_NOFORK);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}
