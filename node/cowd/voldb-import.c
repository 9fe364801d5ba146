/* SPDX-License-Identifier: GPL-2.0-or-later */
/* voldb-import.c: an upgrade from the definitions file of earlier cowd
 * versions, STATE_DIR/volumes.conf, to the store (store.c).
 *
 * At start, when volumes.conf exists, its [volume NAME] sections are read
 * whole (a malformed file stops cowd with the file and line, changing
 * nothing), written to the store in one DURABLE transaction (a name that
 * is in both takes the file's definition), and only then is the file
 * renamed to volumes.conf.imported and the directory fsynced.  A crash
 * before the rename imports the same file again at the next start, which
 * changes nothing; after it, the store is the only copy.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowlog.h"

#include "cowd.h"
#include "store.h"
#include "strmap.h"

struct imp_vol
{
  char *name, *base, *cow, *commit;
  uint32_t chunk_size;
  bool exclusive, buffered, attached;
};

struct imp
{
  struct imp_vol **v;
  size_t n, cap;
  struct strmap by_name;
};

static const char *
imp_name_of (const void *item, const void *ctx)
{
  return ((const struct imp_vol *) item)->name;
}

static bool
imp_yes (const char *v)
{
  return strcmp (v, "yes") == 0 || strcmp (v, "true") == 0
         || strcmp (v, "1") == 0;
}

static struct imp_vol *
imp_vol (struct imp *im, const char *name)
{
  struct imp_vol *v = strmap_get (&im->by_name, name);
  if (v)
    return v;
  if (im->n == im->cap)
    {
      size_t cap = im->cap ? 2 * im->cap : 64;
      struct imp_vol **nv = realloc (im->v, cap * sizeof *nv);
      if (!nv)
        return NULL;
      im->v = nv;
      im->cap = cap;
    }
  if (!(v = calloc (1, sizeof *v)))
    return NULL;
  im->v[im->n++] = v; /* freed with the rest, however far it got */
  if (!(v->name = strdup (name)) || !(v->base = strdup (""))
      || !(v->cow = strdup ("")) || !(v->commit = strdup ("sync")))
    return NULL;
  return strmap_put (&im->by_name, v) < 0 ? NULL : v;
}

static int
imp_str (char **field, const char *value)
{
  char *s = strdup (value);
  if (!s)
    return -1;
  free (*field);
  *field = s;
  return 0;
}

static int
imp_key (void *ud, const char *section, const char *name, const char *key,
         const char *value, char *err, size_t errlen)
{
  struct imp_vol *v;
  enum dscow_commit c;
  if (strcmp (section, "volume") != 0 || name[0] == '\0')
    return snprintf (err, errlen, "expected [volume NAME] sections"), -1;
  if (!(v = imp_vol (ud, name)))
    return snprintf (err, errlen, "out of memory"), -1;
  if (strcmp (key, "base") == 0)
    return imp_str (&v->base, value);
  if (strcmp (key, "cow") == 0)
    return imp_str (&v->cow, value);
  if (strcmp (key, "chunk-size") == 0)
    return v->chunk_size = (uint32_t) strtoul (value, NULL, 10), 0;
  if (strcmp (key, "commit") == 0)
    return vol_commit_parse (value, &c) < 0 ? -1 : imp_str (&v->commit, value);
  if (strcmp (key, "exclusive") == 0)
    return v->exclusive = imp_yes (value), 0;
  if (strcmp (key, "buffered") == 0)
    return v->buffered = imp_yes (value), 0;
  if (strcmp (key, "attached") == 0)
    return v->attached = imp_yes (value), 0;
  snprintf (err, errlen, "unknown key '%s' for volume %s", key, name);
  return -1;
}

static void
imp_free (struct imp *im)
{
  for (size_t i = 0; i < im->n; i++)
    {
      free (im->v[i]->name);
      free (im->v[i]->base);
      free (im->v[i]->cow);
      free (im->v[i]->commit);
      free (im->v[i]);
    }
  free (im->v);
  strmap_free (&im->by_name);
}

static int
imp_write (struct store *s, const struct imp *im)
{
  if (store_begin (s, STORE_DURABLE) < 0)
    return -1;
  for (size_t i = 0; i < im->n; i++)
    {
      const struct imp_vol *v = im->v[i];
      struct store_def d = { .name = v->name,
                             .base = v->base,
                             .cow = v->cow,
                             .commit = v->commit,
                             .chunk_size = v->chunk_size,
                             .exclusive = v->exclusive,
                             .buffered = v->buffered,
                             .attached = v->attached };
      if (store_put (s, &d) < 0)
        {
          store_rollback (s);
          return -1;
        }
    }
  return store_commit (s);
}

static int
imp_rename (const char *dir, const char *from, char *err, size_t errlen)
{
  char *to = NULL;
  int r = -1, fd;
  if (asprintf (&to, "%s.imported", from) < 0)
    return snprintf (err, errlen, "out of memory"), -1;
  if (rename (from, to) < 0)
    snprintf (err, errlen, "cannot rename %s to %s: %m", from, to);
  else if ((fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
    snprintf (err, errlen, "cannot open the directory %s: %m", dir);
  else
    {
      if ((r = fsync (fd)) < 0)
        snprintf (err, errlen, "cannot sync the directory %s: %m", dir);
      close (fd);
    }
  free (to);
  return r;
}

int
voldb_import (struct store *s, const char *dir, char *err, size_t errlen)
{
  char *path = NULL;
  struct imp im = { .by_name = { .key = imp_name_of } };
  int r = -1;
  if (asprintf (&path, "%s/volumes.conf", dir) < 0)
    return snprintf (err, errlen, "out of memory"), -1;
  if (access (path, F_OK) < 0)
    r = 0; /* nothing to import */
  else if (config_parse (path, imp_key, &im, err, errlen) < 0)
    ; /* err names the file and line */
  else if (imp_write (s, &im) < 0)
    snprintf (err, errlen,
              "cannot import %s into the definitions store "
              "%s/%s",
              path, dir, STORE_FILE);
  else if ((r = imp_rename (dir, path, err, errlen)) == 0)
    qb_log (LOG_NOTICE,
            "cowd: imported %zu volume definitions from %s "
            "into %s/%s (the file is now %s.imported)",
            im.n, path, dir, STORE_FILE, path);
  imp_free (&im);
  free (path);
  return r;
}
