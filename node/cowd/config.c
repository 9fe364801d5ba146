/* SPDX-License-Identifier: GPL-2.0-or-later */
/* config.c: cowd's configuration file and the parser it shares with the
 * volume table (voldb.c).
 *
 * Format, one item per line; '#' or ';' start comments:
 *   [cowd]
 *   node-name = n1
 *   [iscsi]
 *   chap-user = ...
 * A section header may carry a name: [volume vm1].  Keys are matched
 * exactly; an unknown key is an error naming the file and line, so a typo
 * never silently changes behaviour.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowlog.h"

#include "cowd.h"

static char *
config_trim (char *s)
{
  while (isspace ((unsigned char) *s))
    s++;
  char *e = s + strlen (s);
  while (e > s && isspace ((unsigned char) e[-1]))
    *--e = '\0';
  return s;
}

/* Parse "[section name]" into section/name (in place). */
static int
config_section (char *line, char *section, size_t slen, char *name, size_t nlen)
{
  char *end = strchr (line, ']');
  if (!end || end[1] != '\0')
    return -1;
  *end = '\0';
  char *s = config_trim (line + 1);
  char *sp = strpbrk (s, " \t");
  name[0] = '\0';
  if (sp)
    {
      *sp = '\0';
      char *n = config_trim (sp + 1);
      if (n[0] == '"' && n[strlen (n) - 1] == '"' && strlen (n) >= 2)
        {
          n[strlen (n) - 1] = '\0';
          n++;
        }
      snprintf (name, nlen, "%s", n);
    }
  snprintf (section, slen, "%s", s);
  return 0;
}

int
config_parse (const char *path, config_fn *fn, void *ud, char *err,
              size_t errlen)
{
  FILE *f = fopen (path, "r");
  if (!f)
    {
      int e = errno;
      snprintf (err, errlen, "%s: cannot open: %s", path, strerror (e));
      return -e;
    }
  char line[4096], section[64] = "", name[256] = "";
  int lineno = 0, r = 0;
  while (r == 0 && fgets (line, sizeof line, f))
    {
      lineno++;
      char *s = config_trim (line);
      if (*s == '\0' || *s == '#' || *s == ';')
        continue;
      if (*s == '[')
        {
          if (config_section (s, section, sizeof section, name, sizeof name)
              < 0)
            {
              snprintf (err, errlen, "%s:%d: malformed section header", path,
                        lineno);
              r = -EINVAL;
            }
          continue;
        }
      char *eq = strchr (s, '=');
      if (!eq || section[0] == '\0')
        {
          snprintf (err, errlen,
                    "%s:%d: expected 'key = value' inside a "
                    "[section]",
                    path, lineno);
          r = -EINVAL;
          continue;
        }
      *eq = '\0';
      char e2[256] = "";
      if (fn (ud, section, name, config_trim (s), config_trim (eq + 1), e2,
              sizeof e2)
          < 0)
        {
          snprintf (err, errlen, "%s:%d: %s", path, lineno, e2);
          r = -EINVAL;
        }
    }
  fclose (f);
  return r;
}

static int
config_set_str (char **dst, const char *value)
{
  free (*dst);
  *dst = strdup (value);
  return *dst ? 0 : -1;
}

/* value, a whole number from min to max, into dst; else a sentence. */
static int
config_set_range (unsigned *dst, const char *key, const char *value,
                  unsigned long min, unsigned long max, const char *what,
                  char *err, size_t errlen)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul (value, &end, 10);
  if (errno || *end || end == value || value[0] == '-' || v < min || v > max)
    {
      snprintf (err, errlen, "%s: '%s' is not %s from %lu to %lu", key, value,
                what, min, max);
      return -1;
    }
  *dst = (unsigned) v;
  return 0;
}

static int
config_set_uint (unsigned *dst, const char *key, const char *value, char *err,
                 size_t errlen)
{
  return config_set_range (dst, key, value, 0, 86400000ul,
                           "a number of milliseconds", err, errlen);
}

static int
config_daemon_key (void *ud, const char *section, const char *name,
                   const char *key, const char *value, char *err, size_t errlen)
{
  struct
  {
    const char *section, *key;
    char **dst;
  } strs[] = {
    { "cowd", "run-dir", &cowd.run_dir },
    { "cowd", "state-dir", &cowd.state_dir },
    { "cowd", "node-name", &cowd.node_name },
    { "cowd", "cluster-name", &cowd.cluster_name },
    { "cowd", "initiator-name", &cowd.initiator_name },
    { "cowd", "fence-command", &cowd.fence_command },
    { "cowd", "metrics-file", &cowd.metrics_file },
    { "iscsi", "initiator-name", &cowd.initiator_name },
    { "iscsi", "chap-user", &cowd.chap_user },
    { "iscsi", "chap-password", &cowd.chap_password },
  };
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    if (strcmp (section, strs[i].section) == 0
        && strcmp (key, strs[i].key) == 0)
      return config_set_str (strs[i].dst, value);
  struct
  {
    const char *key;
    unsigned *dst;
  } ms[] = {
    { "reconnect-deadline-ms", &cowd.reconnect_deadline_ms },
    { "metrics-interval-ms", &cowd.metrics_interval_ms },
    { "quorum-loss-timeout-ms", &cowd.quorum_loss_timeout_ms },
    { "nbd-handshake-timeout-ms", &cowd.nbd_handshake_timeout_ms },
  };
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
    if (strcmp (section, "cowd") == 0 && strcmp (key, ms[i].key) == 0)
      return config_set_uint (ms[i].dst, key, value, err, errlen);
  if (strcmp (section, "cowd") == 0 && strcmp (key, "log-level") == 0)
    {
      unsigned lvl;
      if (config_set_range (&lvl, key, value, 0, 7, "a syslog priority", err,
                            errlen)
          < 0)
        return -1;
      cowd.log_level = (int) lvl;
      return 0;
    }
  if (strcmp (section, "cowd") == 0 && strcmp (key, "worker-threads") == 0)
    return config_set_range (&cowd.worker_threads, key, value, 1, 4096,
                             "a number of threads", err, errlen);
  /* Below corosync's own 99: its token must not wait for cowd. */
  if (strcmp (section, "cowd") == 0 && strcmp (key, "realtime-priority") == 0)
    return config_set_range (&cowd.realtime_priority, key, value, 0, 98,
                             "a realtime priority", err, errlen);
  struct
  {
    const char *key, *no, *yes;
    bool *dst;
  } choices[] = {
    { "fencing", "reservations", "manual", &cowd.fencing_manual },
    { "after-fence", "rejoin", "stay", &cowd.fenced_stay },
  };
  for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++)
    if (strcmp (section, "cowd") == 0 && strcmp (key, choices[i].key) == 0)
      {
        if (strcmp (value, choices[i].no) && strcmp (value, choices[i].yes))
          {
            snprintf (err, errlen, "%s: '%s' is neither %s nor %s", key, value,
                      choices[i].no, choices[i].yes);
            return -1;
          }
        *choices[i].dst = strcmp (value, choices[i].yes) == 0;
        return 0;
      }
  if (strcmp (section, "cowd") == 0 && strcmp (key, "standalone") == 0)
    {
      cowd.standalone = strcmp (value, "yes") == 0 || strcmp (value, "1") == 0
                        || strcmp (value, "true") == 0;
      return 0;
    }
  snprintf (err, errlen, "unknown key '%s' in section [%s]", key, section);
  return -1;
}

int
config_load_daemon (const char *path, char *err, size_t errlen)
{
  return config_parse (path, config_daemon_key, NULL, err, errlen);
}
