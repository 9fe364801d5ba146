/* SPDX-License-Identifier: GPL-2.0-or-later */
/* probe.c: how long cowd's loop goes without turning.
 *
 * Everything cowd does (NBD requests, CPG messages, control commands,
 * applying a state transfer) runs on one qb_loop; work that keeps it for
 * a long time delays every NBD request and may cost the cluster lease.
 * A high-priority timer fires every PROBE_EVERY_MS (50 ms: every 2 ms
 * cost an idle cowd 20% of a CPU); how late a firing is bounds the longest
 * stretch the loop spent in one piece of work since the one before, so
 * the largest lateness seen (the "gap") bounds the loop's worst block.  On a
 * busy machine the gap also counts the time the thread waited for a CPU, so the
 * probe reads the thread's CPU time too: the CPU the loop spent between two
 * firings bounds the work done in one stretch, whoever else runs.  (A
 * blocking system call, an fsync, shows in the gap, not in the CPU time.)
 * `cowctl nodes --json` shows loop.max_gap_ms, loop.max_busy_ms and how
 * many gaps passed 10 ms, and the two maxima as they were when this cowd
 * last became synced with the cluster (sync_gap_ms, sync_busy_ms: what
 * joining cost the loop, before anything else ran); a new largest gap
 * over 10 ms is logged.  It also keeps how long after cowd's main began
 * it last became synced (synced_after_ms), logged then too: what a
 * restart costs before the host serves its volumes again.
 * Cost: one timer per interval (a timerfd: see probe_fire).
 *
 * Where a long gap went: a watcher thread sleeps until PROBE_SLOW_MS
 * after a firing was due; if it has not happened, the loop is late, and
 * the watcher looks at the loop's thread every PROBE_LOOK_MS while it
 * stays late: /proc/self/task/TID/syscall (the system call it is in, with
 * its first argument: for a call on a descriptor, the file it names;
 * for a call on a path, the path) and .../wchan (where the kernel holds
 * it).  The gap's log line says what the first look saw and how many of
 * the looks saw the same: "in fdatasync on fd 12 (/var/lib/x.cow), in
 * the kernel at jbd2_log_wait_commit", or "running" (working, or waiting
 * for a CPU), and how long, from the first look to the last, the thread
 * ran and waited for a CPU (its schedstat).  The longest gap's is kept
 * for `cowctl nodes --json` (loop.max_gap_in).  Cost when the loop
 * turns: one wake-up per firing.
 *
 * How much of a gap was the loop's own: the kernel counts the time a
 * thread waited for a CPU while it could run (/proc/thread-self/schedstat,
 * its second field), read at each firing.  A gap less what the loop's
 * thread waited for a CPU since the firing before is the least that was
 * its own (work, or a blocking call): loop.max_own_gap_ms, and
 * sync_own_gap_ms when last synced.  (A lower bound: a wait for a CPU
 * before the firing was due is subtracted too.)  The longest gap's wait
 * is logged with it.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cowlog.h"

#include "clock.h"
#include "cowd.h"
#include "cowthread.h"
#include "loop.h"

#define PROBE_EVERY_MS 50
#define PROBE_SLOW_MS 10
#define PROBE_LOOK_MS 10
#define PROBE_WHERE 240

static struct
{
  uint64_t last_ns; /* the previous firing, 0 before the first */
  uint64_t max_gap_ns;
  uint64_t last_cpu_ns, max_busy_ns;
  uint64_t synced_gap_ns, synced_busy_ns; /* the maxima when last synced */
  uint64_t start_ns, synced_after_ns;     /* main began; synced since */
  uint64_t slow;                          /* gaps over PROBE_SLOW_MS */
  int sched_fd;          /* the loop thread's schedstat, or -1 */
  uint64_t last_wait_ns; /* its run-queue wait at the last firing */
  uint64_t max_own_ns, synced_own_ns; /* gap less the wait, the largest */
  qb_loop_timer_handle timer;         /* without a timerfd */
  int timer_fd;
  char max_gap_in[PROBE_WHERE + 160]; /* where the longest gap went, or "" */
} P = { .sched_fd = -1, .timer_fd = -1 };

/* The watcher (a thread of its own) and what it saw of the gap after the
 * firing at for_ns; the loop reads it under the lock when it fires. */
static struct
{
  pthread_t thread;
  bool started;
  pid_t tid;               /* the loop's thread */
  _Atomic uint64_t due_ns; /* the next firing is due then; 0: none yet */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stop;
  uint64_t for_ns;         /* the firing whose lateness it looked at */
  char first[PROBE_WHERE]; /* what the first look saw */
  unsigned looks, same;    /* looks, and those that saw the same */
  /* The loop thread's schedstat (time on a CPU, time waiting for one)
   * at the first look of the gap and at the last. */
  uint64_t run0, wait0, run1, wait1;
} W = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The loop thread's time on a CPU and waiting for one so far (ns), or
 * 0 and 0; from either thread (P.sched_fd is the loop thread's). */
static void
probe_schedstat (uint64_t *run, uint64_t *wait)
{
  char buf[128];
  ssize_t n = P.sched_fd >= 0 ? pread (P.sched_fd, buf, sizeof buf - 1, 0) : -1;
  *run = *wait = 0;
  if (n <= 0)
    return;
  buf[n] = '\0';
  if (sscanf (buf, "%" SCNu64 " %" SCNu64, run, wait) != 2)
    *run = *wait = 0;
}

static uint64_t
probe_cpu_wait_ns (void)
{
  uint64_t run, wait;
  probe_schedstat (&run, &wait);
  return wait;
}

/* What a look names besides the call: the file of a descriptor (the
 * first argument) or a path (the second: openat and the like). */
enum probe_arg
{
  PROBE_ARG_NONE,
  PROBE_ARG_FD,
  PROBE_ARG_PATH,
};

/* The system calls a loop may block in (others by number). */
static const struct probe_call
{
  long nr;
  const char *name;
  enum probe_arg arg;
} probe_calls[] = {
  { SYS_read, "read", PROBE_ARG_FD },
  { SYS_write, "write", PROBE_ARG_FD },
  { SYS_pread64, "pread64", PROBE_ARG_FD },
  { SYS_pwrite64, "pwrite64", PROBE_ARG_FD },
  { SYS_readv, "readv", PROBE_ARG_FD },
  { SYS_writev, "writev", PROBE_ARG_FD },
  { SYS_preadv, "preadv", PROBE_ARG_FD },
  { SYS_pwritev, "pwritev", PROBE_ARG_FD },
  { SYS_preadv2, "preadv2", PROBE_ARG_FD },
  { SYS_pwritev2, "pwritev2", PROBE_ARG_FD },
  { SYS_fsync, "fsync", PROBE_ARG_FD },
  { SYS_fdatasync, "fdatasync", PROBE_ARG_FD },
  { SYS_syncfs, "syncfs", PROBE_ARG_FD },
  { SYS_sync_file_range, "sync_file_range", PROBE_ARG_FD },
  { SYS_fallocate, "fallocate", PROBE_ARG_FD },
  { SYS_ftruncate, "ftruncate", PROBE_ARG_FD },
  { SYS_ioctl, "ioctl", PROBE_ARG_FD },
  { SYS_fcntl, "fcntl", PROBE_ARG_FD },
  { SYS_flock, "flock", PROBE_ARG_FD },
  { SYS_close, "close", PROBE_ARG_FD },
  { SYS_openat, "openat", PROBE_ARG_PATH },
  { SYS_newfstatat, "newfstatat", PROBE_ARG_PATH },
  { SYS_statx, "statx", PROBE_ARG_PATH },
  { SYS_unlinkat, "unlinkat", PROBE_ARG_PATH },
  { SYS_renameat2, "renameat2", PROBE_ARG_PATH },
  { SYS_mkdirat, "mkdirat", PROBE_ARG_PATH },
  { SYS_fstat, "fstat", PROBE_ARG_FD },
  { SYS_sendmsg, "sendmsg", PROBE_ARG_FD },
  { SYS_recvmsg, "recvmsg", PROBE_ARG_FD },
  { SYS_sendto, "sendto", PROBE_ARG_FD },
  { SYS_recvfrom, "recvfrom", PROBE_ARG_FD },
  { SYS_connect, "connect", PROBE_ARG_FD },
#ifdef SYS_poll
  { SYS_poll, "poll", PROBE_ARG_NONE },
#endif
  { SYS_ppoll, "ppoll", PROBE_ARG_NONE },
#ifdef SYS_epoll_wait
  { SYS_epoll_wait, "epoll_wait", PROBE_ARG_NONE },
#endif
  { SYS_io_uring_enter, "io_uring_enter", PROBE_ARG_FD },
  { SYS_futex, "futex", PROBE_ARG_NONE },
  { SYS_nanosleep, "nanosleep", PROBE_ARG_NONE },
  { SYS_clock_nanosleep, "clock_nanosleep", PROBE_ARG_NONE },
  { SYS_mmap, "mmap", PROBE_ARG_NONE },
  { SYS_munmap, "munmap", PROBE_ARG_NONE },
  { SYS_mremap, "mremap", PROBE_ARG_NONE },
  { SYS_madvise, "madvise", PROBE_ARG_NONE },
  { SYS_brk, "brk", PROBE_ARG_NONE },
  { SYS_wait4, "wait4", PROBE_ARG_NONE },
};

static const struct probe_call *
probe_call (long nr)
{
  for (size_t i = 0; i < sizeof probe_calls / sizeof probe_calls[0]; i++)
    if (probe_calls[i].nr == nr)
      return &probe_calls[i];
  return NULL;
}

/* A string of this process at addr (the loop's argument of the call it
 * is in), read so that a pointer gone stale meanwhile fails, not faults. */
static bool
probe_read_str (uint64_t addr, char *out, size_t len)
{
  struct iovec local = { out, len - 1 },
               remote = { (void *) (uintptr_t) addr, len - 1 };
  ssize_t n = process_vm_readv (getpid (), &local, 1, &remote, 1, 0);
  if (n <= 0)
    {
      /* Across a page boundary that is not there: a shorter piece. */
      size_t in_page = 4096 - (addr & 4095);
      if (in_page >= len - 1)
        return false;
      local.iov_len = remote.iov_len = in_page;
      if ((n = process_vm_readv (getpid (), &local, 1, &remote, 1, 0)) <= 0)
        return false;
    }
  out[n] = '\0';
  return memchr (out, '\0', (size_t) n) || (size_t) n == len - 1;
}

/* A small file of the loop's thread in /proc, its first line. */
static bool
probe_task_file (const char *what, char *out, size_t len)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/self/task/%d/%s", (int) W.tid, what);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = read (fd, out, len - 1);
  close (fd);
  if (n <= 0)
    return false;
  out[n] = '\0';
  out[strcspn (out, "\n")] = '\0';
  return true;
}

/* What the loop's thread is doing now, in words, into out. */
static void
probe_look (char *out, size_t len)
{
  char sc[256], wchan[64] = "", arg[160] = "";
  if (!probe_task_file ("syscall", sc, sizeof sc))
    {
      snprintf (out, len, "unknown (%m)");
      return;
    }
  if (strncmp (sc, "running", 7) == 0)
    {
      snprintf (out, len, "running (working, or waiting for a CPU)");
      return;
    }
  char *end;
  long nr = strtol (sc, &end, 10);
  uint64_t a[2] = { 0, 0 };
  for (int i = 0; i < 2 && *end; i++)
    a[i] = strtoull (end, &end, 16);
  if (!probe_task_file ("wchan", wchan, sizeof wchan) || !strcmp (wchan, "0"))
    wchan[0] = '\0';
  if (nr < 0)
    {
      snprintf (out, len, "in the kernel outside a system call%s%s",
                wchan[0] ? " at " : "", wchan);
      return;
    }
  const struct probe_call *call = probe_call (nr);
  enum probe_arg kind = call ? call->arg : PROBE_ARG_NONE;
  if (kind == PROBE_ARG_FD)
    {
      char link[64], target[128];
      snprintf (link, sizeof link, "/proc/self/fd/%d", (int) a[0]);
      ssize_t n = readlink (link, target, sizeof target - 1);
      target[n > 0 ? n : 0] = '\0';
      snprintf (arg, sizeof arg, " on fd %d (%s)", (int) a[0],
                n > 0 ? target : "closed");
    }
  else if (kind == PROBE_ARG_PATH)
    {
      char path[128];
      if (probe_read_str (a[1], path, sizeof path))
        snprintf (arg, sizeof arg, " on %s", path);
    }
  char num[32];
  if (!call)
    snprintf (num, sizeof num, "system call %ld", nr);
  snprintf (out, len, "in %s%s%s%s", call ? call->name : num, arg,
            wchan[0] ? ", in the kernel at " : "", wchan);
}

static void *
probe_watch (void *data)
{
  uint64_t every = (uint64_t) PROBE_EVERY_MS * 1000000ull;
  uint64_t slow = (uint64_t) PROBE_SLOW_MS * 1000000ull;
  pthread_mutex_lock (&W.lock);
  while (!W.stop)
    {
      uint64_t due = atomic_load (&W.due_ns), now = cowd_now_ns ();
      uint64_t at = due + slow;
      if (due && now >= at)
        {
          /* Late: look, outside the lock (the loop may fire meanwhile;
           * a look that straddles it is kept for the firing it began in,
           * which counts this gap). */
          char where[PROBE_WHERE];
          uint64_t run, wait;
          pthread_mutex_unlock (&W.lock);
          probe_look (where, sizeof where);
          probe_schedstat (&run, &wait);
          pthread_mutex_lock (&W.lock);
          if (W.for_ns != due)
            {
              W.for_ns = due;
              snprintf (W.first, sizeof W.first, "%s", where);
              W.looks = W.same = 0;
              W.run0 = run;
              W.wait0 = wait;
            }
          W.run1 = run;
          W.wait1 = wait;
          W.looks++;
          W.same += strcmp (where, W.first) == 0;
          at = now + (uint64_t) PROBE_LOOK_MS * 1000000ull;
        }
      else if (!due)
        at = now + every;
      struct timespec ts
          = { (time_t) (at / 1000000000ull), (long) (at % 1000000000ull) };
      pthread_cond_timedwait (&W.wake, &W.lock, &ts);
    }
  pthread_mutex_unlock (&W.lock);
  return data;
}

static void
probe_watch_start (void)
{
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&W.wake, &ca);
  pthread_condattr_destroy (&ca);
  W.tid = (pid_t) syscall (SYS_gettid);
  int r = cow_thread_create (&W.thread, false, probe_watch, NULL);
  if (r != 0)
    qb_log (LOG_WARNING,
            "cowd: cannot start the thread that looks where the loop's "
            "long gaps go (%s): they are logged without it",
            strerror (r));
  W.started = r == 0;
}

void
probe_stop (void)
{
  if (!W.started)
    return;
  pthread_mutex_lock (&W.lock);
  W.stop = true;
  pthread_cond_signal (&W.wake);
  pthread_mutex_unlock (&W.lock);
  pthread_join (W.thread, NULL);
  W.started = false;
}

/* What the watcher saw of the gap that ends now (due at due_ns), in
 * words after "; ", into out, or "". */
static void
probe_gap_where (uint64_t due_ns, char *out, size_t len)
{
  out[0] = '\0';
  pthread_mutex_lock (&W.lock);
  if (W.looks && W.for_ns == due_ns)
    snprintf (out, len,
              "%s (%u of %u looks, every %u ms; from the first to the last "
              "it ran %.1f ms and waited %.1f ms for a CPU)",
              W.first, W.same, W.looks, PROBE_LOOK_MS,
              (double) (W.run1 - W.run0) / 1e6,
              (double) (W.wait1 - W.wait0) / 1e6);
  pthread_mutex_unlock (&W.lock);
}

/* Count the stretch since the last firing (also when synced, so that
 * the work of the sync itself counts). */
static void
probe_fire_stats (void)
{
  uint64_t now = cowd_now_ns (), cpu = clock_thread_cpu_ns ();
  uint64_t cwait = probe_cpu_wait_ns ();
  if (P.last_ns && cpu - P.last_cpu_ns > P.max_busy_ns)
    P.max_busy_ns = cpu - P.last_cpu_ns;
  P.last_cpu_ns = cpu;
  if (P.last_ns)
    {
      /* How late this firing is: a block of B ms makes it late by up to
       * B ms, whatever the interval. */
      uint64_t every = (uint64_t) PROBE_EVERY_MS * 1000000ull;
      uint64_t gap = now - P.last_ns > every ? now - P.last_ns - every : 0;
      uint64_t waited = cwait - P.last_wait_ns;
      uint64_t own = gap > waited ? gap - waited : 0;
      if (own > P.max_own_ns)
        P.max_own_ns = own;
      char where[PROBE_WHERE + 160] = "";
      bool late = gap > (uint64_t) PROBE_SLOW_MS * 1000000ull;
      if (late)
        {
          P.slow++;
          probe_gap_where (P.last_ns + every, where, sizeof where);
        }
      if (gap > P.max_gap_ns && late)
        qb_log (LOG_NOTICE,
                "cowd: the loop did not turn for %.1f ms (its thread "
                "waited %.1f ms for a CPU since the turn before)%s%s",
                (double) gap / 1e6, (double) waited / 1e6,
                where[0] ? "; it was " : "", where);
      if (gap > P.max_gap_ns)
        {
          P.max_gap_ns = gap;
          snprintf (P.max_gap_in, sizeof P.max_gap_in, "%s", where);
        }
    }
  P.last_wait_ns = cwait;
  P.last_ns = now;
  atomic_store (&W.due_ns, now + (uint64_t) PROBE_EVERY_MS * 1000000ull);
}

/* The interval is a timerfd of its own, armed once per firing, not a
 * qb_loop timer: qb_loop waits in epoll_wait for the whole milliseconds
 * left to a timer, rounded down, and then polls with no wait until the
 * timer is due (strace of an idle cowd: epoll_wait(49), then about a
 * dozen epoll_wait(0) in the last millisecond of every firing), which
 * was most of an idle cowd's CPU.  A timerfd wakes the loop when due. */
static void probe_fire (void *data);

static int
probe_fire_fd (int fd, int revents, void *data)
{
  uint64_t n;
  if (read (fd, &n, sizeof n) < 0 && errno != EAGAIN)
    qb_log (LOG_WARNING, "cowd: reading the loop probe's timer failed: %s",
            strerror (errno));
  probe_fire (data);
  return 0;
}

static void
probe_fire (void *data)
{
  probe_fire_stats ();
  uint64_t every = (uint64_t) PROBE_EVERY_MS * 1000000ull;
  struct itimerspec its = { .it_value = { 0, (long) every } };
  if (P.timer_fd >= 0 && timerfd_settime (P.timer_fd, 0, &its, NULL) == 0)
    return;
  qb_loop_timer_add (cowd_loop (), QB_LOOP_HIGH, every, NULL, probe_fire,
                     &P.timer);
}

void
probe_start (void)
{
  P.sched_fd = open ("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  P.timer_fd = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (P.timer_fd >= 0
      && qb_loop_poll_add (cowd_loop (), QB_LOOP_HIGH, P.timer_fd, POLLIN, NULL,
                           probe_fire_fd)
             != 0)
    {
      close (P.timer_fd);
      P.timer_fd = -1;
    }
  probe_fire (NULL);
  probe_watch_start ();
}

/* Realtime: a loop thread that waits for a CPU behind ordinary processes
 * delays every NBD request and may let its lease run out (the gaps above
 * are mostly such waits on a busy host).  corosync and sanlock run
 * SCHED_RR for the same reason.  The loop's thread passes its priority on
 * to what the kernel starts for it: io_uring's workers, which do the
 * reads and writes the loop waits for.  With SCHED_RESET_ON_FORK they
 * started ordinary, and two realtime cowds on this machine's two CPUs
 * answered 4K reads at p99 2.7-4.8 ms, against 0.5 ms when ordinary and
 * 0.7 ms with the workers realtime too (tests/bench/rt-workers).  Every
 * thread cowd starts itself (offloads, the checkpointer, the control
 * channel, fence jobs, the watcher) asks for ordinary scheduling
 * explicitly (cowthread.h), and so does every child of those (a fence
 * command): blocking work never competes with the loop at its priority. */
void
probe_realtime_start (void)
{
  if (cowd.realtime_priority == 0)
    return;
  struct sched_param sp = { .sched_priority = (int) cowd.realtime_priority };
  if (sched_setscheduler (0, SCHED_RR, &sp) < 0)
    {
      qb_log (LOG_WARNING,
              "cowd: cannot run the loop at realtime priority %u (%s): it "
              "runs at ordinary priority",
              cowd.realtime_priority, strerror (errno));
      return;
    }
  qb_log (LOG_INFO, "cowd: the loop runs at realtime priority %u (SCHED_RR)",
          cowd.realtime_priority);
}

int
probe_realtime_priority (void)
{
  struct sched_param sp;
  int policy = sched_getscheduler (0) & ~SCHED_RESET_ON_FORK;
  if ((policy != SCHED_RR && policy != SCHED_FIFO)
      || sched_getparam (0, &sp) < 0)
    return 0;
  return sp.sched_priority;
}

void
probe_mark_start (void)
{
  P.start_ns = cowd_now_ns ();
}

void
probe_mark_synced (void)
{
  probe_fire_stats ();
  P.synced_gap_ns = P.max_gap_ns;
  P.synced_busy_ns = P.max_busy_ns;
  P.synced_own_ns = P.max_own_ns;
  P.synced_after_ns = cowd_now_ns () - P.start_ns;
  qb_log (LOG_INFO, "cowd: synced %.1f ms after it started",
          (double) P.synced_after_ns / 1e6);
}

void
probe_synced (double *gap_ms, double *busy_ms, double *after_ms)
{
  *gap_ms = (double) P.synced_gap_ns / 1e6;
  *busy_ms = (double) P.synced_busy_ns / 1e6;
  *after_ms = (double) P.synced_after_ns / 1e6;
}

void
probe_get (double *max_gap_ms, double *max_busy_ms, uint64_t *slow)
{
  *max_gap_ms = (double) P.max_gap_ns / 1e6;
  *max_busy_ms = (double) P.max_busy_ns / 1e6;
  *slow = P.slow;
}

void
probe_own (double *max_own_ms, double *sync_own_ms)
{
  *max_own_ms = (double) P.max_own_ns / 1e6;
  *sync_own_ms = (double) P.synced_own_ns / 1e6;
}

const char *
probe_max_gap_in (void)
{
  return P.max_gap_in;
}
