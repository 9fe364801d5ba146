/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cowd: the per-host cowherd agent.
 *
 * Start-up: parse the command line and configuration file, set up libqb
 * logging (stderr in the foreground, syslog otherwise), create the run
 * and state directories, take the pid file, load the volume definitions
 * and re-attach every volume that was attached when cowd last stopped
 * (one that cannot be says why: in the log, on stderr in the foreground,
 * and in `cowctl status NAME`),
 * start the control channel, then run the qb_loop until SIGTERM/SIGINT.
 *
 * Without -f, cowd forks first and the parent waits on a pipe that is the
 * child's stderr for the whole start-up: it copies to its own stderr the
 * warnings and errors the child logs, and exits 0 when the child writes
 * the one NUL byte that says "serving", or 1 when the pipe closes without
 * it (the child failed and exited 1).  So a failed start says why on the
 * terminal and exits 1, and the forked daemon is the process that holds
 * the pid file, corosync's connections and the control channel.  A child
 * that fails after taking the pid file removes it.
 *
 * Stop: detach every volume (drain, commit, mark clean), then exit.  The
 * definitions and the attached flags stay in the state directory, so a
 * restarted agent serves the same volumes on the same sockets and
 * clients simply reconnect.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cowlog.h"
#include <qb/qbloop.h>

#include "cowd.h"
#include "ctl.h"
#include "loop.h"
#include "nbd-server.h"

#define COWD_CONFIG_DEFAULT SYSCONFDIR "/cowherd/cowd.conf"

struct cowd cowd = {
  .own = &own_alone_ops,
  .log_level = LOG_INFO,
  .reconnect_deadline_ms = 30000,
  .worker_threads = 64,
  .quorum_loss_timeout_ms = 3000,
  .metrics_interval_ms = 5000,
};

static unsigned detaching;
static int pid_fd = -1;
static int start_pipe = -1; /* the daemon's stderr until it serves */

static void
usage (FILE *f)
{
  fprintf (f, "usage: cowd [-f] [--standalone | --cluster NAME] [--config "
              "FILE] [--run-dir DIR]\n            [--state-dir DIR] "
              "[--node-name NAME] [-v] [--version]\n");
}

static int
parse_args (int argc, char **argv)
{
  static const struct option opts[] = {
    { "foreground", no_argument, NULL, 'f' },
    { "standalone", no_argument, NULL, 's' },
    { "config", required_argument, NULL, 'c' },
    { "run-dir", required_argument, NULL, 'r' },
    { "state-dir", required_argument, NULL, 'S' },
    { "node-name", required_argument, NULL, 'n' },
    { "cluster", required_argument, NULL, 'C' },
    { "verbose", no_argument, NULL, 'v' },
    { "version", no_argument, NULL, 'V' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  char *run_dir = NULL, *state_dir = NULL, *node = NULL, *cluster = NULL;
  bool verbose = false, standalone = false;
  int c;
  while ((c = getopt_long (argc, argv, "fc:vh", opts, NULL)) != -1)
    switch (c)
      {
      case 'f':
        cowd.foreground = true;
        break;
      case 's':
        standalone = true;
        break;
      case 'c':
        cowd.config_file = strdup (optarg);
        break;
      case 'r':
        run_dir = optarg;
        break;
      case 'S':
        state_dir = optarg;
        break;
      case 'n':
        node = optarg;
        break;
      case 'C':
        cluster = optarg;
        break;
      case 'v':
        verbose = true;
        break;
      case 'V':
        printf ("cowd %s\n", PACKAGE_VERSION);
        exit (0);
      case 'h':
        usage (stdout);
        exit (0);
      default:
        usage (stderr);
        return -1;
      }
  if (optind != argc)
    {
      usage (stderr);
      return -1;
    }
  char err[COW_ERRLEN];
  /* Without --config, the default file if there is one. */
  if (!cowd.config_file && access (COWD_CONFIG_DEFAULT, F_OK) == 0)
    cowd.config_file = strdup (COWD_CONFIG_DEFAULT);
  if (cowd.config_file
      && config_load_daemon (cowd.config_file, err, sizeof err) < 0)
    {
      fprintf (stderr, "cowd: %s\n", err);
      return -1;
    }
  /* The command line beats the environment beats the config file. */
  const char *env = getenv ("COWHERD_RUN_DIR");
  if (run_dir || (env && *env))
    {
      free (cowd.run_dir);
      cowd.run_dir = strdup (run_dir ? run_dir : env);
    }
  if (!cowd.run_dir)
    cowd.run_dir = strdup (RUNSTATEDIR "/cowherd");
  if (state_dir)
    {
      free (cowd.state_dir);
      cowd.state_dir = strdup (state_dir);
    }
  if (!cowd.state_dir && (run_dir || (env && *env)))
    asprintf (&cowd.state_dir, "%s/state", cowd.run_dir);
  if (!cowd.state_dir)
    cowd.state_dir = strdup (LOCALSTATEDIR "/lib/cowherd");
  if (node)
    {
      free (cowd.node_name);
      cowd.node_name = strdup (node);
    }
  if (cluster)
    {
      free (cowd.cluster_name);
      cowd.cluster_name = strdup (cluster);
    }
  /* Standalone is the default for one host: a cluster must be named. */
  if (standalone || !cowd.cluster_name)
    cowd.standalone = true;
  if (verbose)
    cowd.log_level = LOG_DEBUG;
  return 0;
}

static int
make_dir (const char *path, mode_t mode)
{
  char tmp[PATH_MAX];
  snprintf (tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/')
      {
        *p = '\0';
        mkdir (tmp, 0755);
        *p = '/';
      }
  if (mkdir (tmp, mode) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

/* Absolute paths: the control service name is derived from run_dir. */
static void
absolutize (char **path)
{
  char buf[PATH_MAX];
  if ((*path)[0] == '/' || !getcwd (buf, sizeof buf))
    return;
  char *abs;
  if (asprintf (&abs, "%s/%s", buf, *path) < 0)
    return;
  free (*path);
  *path = abs;
}

static int
take_pid_file (void)
{
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/cowd.pid", cowd.run_dir);
  pid_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (pid_fd < 0)
    {
      qb_log (LOG_ERR, "cowd: cannot open %s: %m", path);
      return -1;
    }
  if (flock (pid_fd, LOCK_EX | LOCK_NB) < 0)
    {
      qb_log (LOG_ERR,
              "cowd: another cowd already runs with run directory "
              "%s",
              cowd.run_dir);
      close (pid_fd);
      pid_fd = -1;
      return -1;
    }
  char buf[32];
  int n = snprintf (buf, sizeof buf, "%d\n", (int) getpid ());
  if (ftruncate (pid_fd, 0) < 0 || pwrite (pid_fd, buf, (size_t) n, 0) != n)
    qb_log (LOG_WARNING, "cowd: cannot write %s: %m", path);
  return 0;
}

static void
setup_logging (void)
{
  qb_log_init ("cowd", LOG_DAEMON, cowd.log_level);
  if (cowd.foreground)
    {
      qb_log_format_set (QB_LOG_STDERR, "%t %p: %b");
      qb_log_ctl (QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, QB_FALSE);
      qb_log_ctl (QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);
      qb_log_filter_ctl (QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE,
                         "*", (uint8_t) cowd.log_level);
    }
  else /* the start pipe: what went wrong */
    {
      qb_log_format_set (QB_LOG_STDERR, "%b");
      qb_log_ctl (QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);
      qb_log_filter_ctl (QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE,
                         "*", LOG_WARNING);
    }
  qb_log_filter_ctl (QB_LOG_SYSLOG, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
                     (uint8_t) cowd.log_level);
}

/* The parent of a starting daemon: copy the child's start-up messages to
 * stderr until it says it serves (a NUL byte: exit 0) or the pipe closes
 * (it failed: exit 1).  Never returns. */
static void __attribute__ ((noreturn)) start_wait (int fd)
{
  char buf[4096];
  ssize_t n;
  while ((n = read (fd, buf, sizeof buf)) != 0)
    {
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        break;
      char *nul = memchr (buf, '\0', (size_t) n);
      size_t len = nul ? (size_t) (nul - buf) : (size_t) n;
      if (len && write (STDERR_FILENO, buf, len) < 0)
        break;
      if (nul)
        _exit (0);
    }
  _exit (1);
}

/* Fork; the parent waits in start_wait.  The child goes on in its own
 * session with stdin and stdout on /dev/null and stderr on the pipe. */
static int
start_fork (void)
{
  int p[2];
  if (pipe2 (p, O_CLOEXEC) < 0)
    return -1;
  pid_t pid = fork ();
  if (pid < 0)
    return -1;
  if (pid > 0)
    {
      close (p[1]);
      start_wait (p[0]);
    }
  close (p[0]);
  int null = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0 || setsid () < 0 || chdir ("/") < 0
      || dup2 (null, STDIN_FILENO) < 0 || dup2 (null, STDOUT_FILENO) < 0
      || dup2 (p[1], STDERR_FILENO) < 0)
    return -1;
  close (null);
  start_pipe = p[1];
  return 0;
}

/* Started: tell the parent, and stop writing to its stderr. */
static void
start_done (void)
{
  if (start_pipe < 0)
    return;
  qb_log_ctl (QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_FALSE);
  if (write (start_pipe, "", 1) < 0)
    qb_log (LOG_WARNING, "cowd: cannot report the start: %m");
  int null = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0)
    {
      dup2 (null, STDERR_FILENO);
      close (null);
    }
  close (start_pipe);
  start_pipe = -1;
}

/* Standalone start: the volumes attached when cowd stopped open again,
 * each on a thread (at most worker-threads at once), so a thousand iSCSI
 * volumes log in side by side rather than one after another, and each
 * serves as soon as it has opened.  The control channel listens (and
 * cowd, started as a daemon, returns; READY=1) once the last has opened
 * or failed: whoever sees cowctl answer finds every saved volume served
 * or failed, as when the opens ran one after another on the loop. */
static bool start_failed; /* the control channel did not start */
static bool stopping;     /* a stop signal came */

/* The last step of a start: cowctl can connect. */
static int
control_start_now (void)
{
  if (ctl_server_start (cowd_loop (), cowd.run_dir, cmds_dispatch) < 0)
    return -1;
  notify_ready_part (NOTIFY_CONTROL);
  qb_log (LOG_NOTICE, "cowd: %s serving, run directory %s", PACKAGE_VERSION,
          cowd.run_dir);
  start_done ();
  return 0;
}

static void
control_start (void *data)
{
  (void) data;
  if (stopping) /* a stop came while the saved volumes opened */
    return;
  if (control_start_now () < 0)
    {
      start_failed = true;
      qb_loop_stop (cowd_loop ());
    }
}

static struct
{
  unsigned opening; /* and 1 while they are being started */
  unsigned n, failed;
  uint64_t t0;
} saved;

static void
saved_volume_done (void *opaque, int r, const char *err)
{
  struct vol_entry *e = opaque;
  if (r < 0)
    {
      voldb_attach_failed (e, err);
      saved.failed++;
    }
  if (--saved.opening > 0)
    return;
  if (saved.n)
    qb_log (LOG_NOTICE,
            "cowd: %u saved volume(s) attached again in %.0f ms, %u of them "
            "failed",
            saved.n, (double) (cowd_now_ns () - saved.t0) / 1e6, saved.failed);
  notify_ready_part (NOTIFY_VOLUMES);
  qb_loop_job_add (cowd_loop (), QB_LOOP_HIGH, NULL, control_start);
}

static void
attach_saved_volumes (void)
{
  saved.opening = 1;
  saved.t0 = cowd_now_ns ();
  VOLDB_FOR_LIVE (e)
    {
      if (!e->attached)
        continue;
      char err[COW_ERRLEN];
      saved.n++;
      saved.opening++;
      int r = voldb_attach_async (e, saved_volume_done, e, err, sizeof err);
      if (r <= 0)
        saved_volume_done (e, r, err);
    }
  saved_volume_done (NULL, 0, NULL);
}

static void
stop_one_done (void *opaque, int res)
{
  if (--detaching == 0)
    qb_loop_stop (cowd_loop ());
}

static int
on_stop_signal (int sig, void *data)
{
  if (stopping)
    return 0;
  stopping = true;
  notify_stopping ();
  qb_log (LOG_NOTICE, "cowd: signal %d: detaching volumes and stopping", sig);
  ctl_server_stop ();
  detaching = 1;
  VOLDB_FOR_LIVE (e)
    if (e->vol && !e->closing)
      {
        detaching++;
        voldb_detach (e, stop_one_done, NULL);
      }
  stop_one_done (NULL, 0);
  return 0;
}

/* Everything that can fail at start, in order; the caller exits 1. */
static int
cowd_start (void)
{
  int r;
  if ((r = make_dir (cowd.run_dir, 0700)) < 0
      || (r = make_dir (cowd.state_dir, 0700)) < 0)
    {
      qb_log (LOG_ERR, "cowd: cannot create %s or %s: %s", cowd.run_dir,
              cowd.state_dir, strerror (-r));
      return -1;
    }
  blackbox_start ();
  if (take_pid_file () < 0)
    return -1;
  probe_realtime_start (); /* before any thread: they start ordinary */
  cowd_loop_set (qb_loop_create ());
  if (!cowd_loop () || (r = cowd_defer_init ()) < 0)
    {
      qb_log (LOG_ERR, "cowd: cannot set up the event loop: %s",
              strerror (cowd_loop () ? -r : ENOMEM));
      return -1;
    }
  char err[COW_ERRLEN];
  if (voldb_load (err, sizeof err) < 0)
    {
      qb_log (LOG_ERR, "cowd: %s", err);
      return -1;
    }
  qb_loop_signal_add (cowd_loop (), QB_LOOP_HIGH, SIGTERM, NULL, on_stop_signal,
                      NULL);
  qb_loop_signal_add (cowd_loop (), QB_LOOP_HIGH, SIGINT, NULL, on_stop_signal,
                      NULL);
  if (!cowd.standalone && own_start (err, sizeof err) < 0)
    {
      qb_log (LOG_ERR, "cowd: %s", err);
      return -1;
    }
  nbd_set_handshake_timeout (cowd.nbd_handshake_timeout_ms);
  metrics_start ();
  probe_start ();
  if (cowd.standalone)
    {
      attach_saved_volumes (); /* the control channel after them */
      return 0;
    }
  /* In a cluster the volumes attach once the table has arrived. */
  notify_status ("waiting for the ownership table of cluster %s",
                 cowd.cluster_name);
  return control_start_now ();
}

static void
remove_pid_file (void)
{
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/cowd.pid", cowd.run_dir);
  unlink (path);
}

int
main (int argc, char **argv)
{
  probe_mark_start ();
  if (parse_args (argc, argv) < 0)
    return 2;
  absolutize (&cowd.run_dir);
  absolutize (&cowd.state_dir);
  if (!cowd.foreground && start_fork () < 0)
    {
      fprintf (stderr, "cowd: cannot become a daemon: %m\n");
      return 1;
    }
  setup_logging ();
  signal (SIGPIPE, SIG_IGN);
  if (cowd_start () < 0)
    {
      if (pid_fd >= 0)
        remove_pid_file (); /* ours: no stale pid file */
      qb_log_fini ();
      return 1;
    }
  qb_loop_run (cowd_loop ());
  probe_stop ();
  cowd_offload_drain (); /* a create's format or syncfs under way */
  own_stop ();
  voldb_flush ();
  qb_log (LOG_NOTICE, "cowd: stopped");
  remove_pid_file ();
  qb_loop_destroy (cowd_loop ());
  qb_log_fini ();
  return start_failed ? 1 : 0;
}
