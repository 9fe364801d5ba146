/* SPDX-License-Identifier: GPL-2.0-or-later */
/* voldb.c: the table of volume definitions this agent knows, persisted in
 * STATE_DIR/volumes.conf so that definitions, and which volumes are
 * attached, survive a restart of cowd.  The file is rewritten whole and
 * atomically (temporary file, fsync, rename, fsync of the directory).
 *
 * A CoW device belongs to one definition: create and attach refuse a
 * device another volume names, however it is named (backend_key: the
 * device and inode of a file, the device number of a block device, the
 * normalised URL or VPD identity of a LUN).  Paths are absolute.
 *
 * Attach opens the volume and starts its NBD export on
 * RUN_DIR/NAME.sock.  The socket path depends only on the run directory
 * and the name, so after a restart clients reconnect to the same path.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "cowd.h"
#include "nbd-server.h"

struct vol_entry *
voldb_find (const char *name)
{
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    if (strcmp (e->name, name) == 0)
      return e;
  return NULL;
}

struct vol_entry *
voldb_add (const char *name, const char *base, const char *cow,
           uint32_t chunk_size, enum dscow_commit commit)
{
  struct vol_entry *e = calloc (1, sizeof *e);
  if (!e)
    return NULL;
  e->name = strdup (name);
  e->base = strdup (base);
  e->cow = strdup (cow);
  e->chunk_size = chunk_size;
  e->commit = commit;
  /* Keep the list sorted by name: list output is stable. */
  struct vol_entry **p = &cowd.vols;
  while (*p && strcmp ((*p)->name, name) < 0)
    p = &(*p)->next;
  e->next = *p;
  *p = e;
  return e;
}

void
voldb_remove (struct vol_entry *e)
{
  for (struct vol_entry **p = &cowd.vols; *p; p = &(*p)->next)
    if (*p == e)
      {
        *p = e->next;
        break;
      }
  free (e->name);
  free (e->base);
  free (e->cow);
  free (e->error);
  free (e);
}

void
voldb_set_error (struct vol_entry *e, const char *sentence)
{
  free (e->error);
  e->error = sentence ? strdup (sentence) : NULL;
}

void
voldb_attach_failed (struct vol_entry *e, const char *sentence)
{
  qb_log (LOG_ERR, "cowd: %s: not re-attached at start: %s", e->name,
          sentence);
  voldb_set_error (e, sentence);
}

int
voldb_check_path (const char *vol, const char *what, const char *uri,
                  char *err, size_t errlen)
{
  if (uri[0] == '/' || strstr (uri, "://"))
    return 0;
  snprintf (err, errlen, "volume %s: %s path '%s' is relative; cowd needs an "
            "absolute path (cowctl makes the paths it is given absolute)",
            vol, what, uri);
  return -1;
}

/* Does e's CoW device name the device whose key is key (or, for a LUN,
 * whose VPD identity is ident)? */
static bool
voldb_cow_is (const struct vol_entry *e, const char *key, const char *ident)
{
  char k[sizeof ((struct backend *) 0)->key];
  if (e->vol)
    {
      const struct backend *c = vol_cow_backend (e->vol);
      bool vpd = ident && ident[0] && strncmp (ident, "serial.", 7) != 0
        && strncmp (ident, "digest:", 7) != 0;
      if (strcmp (c->key, key) == 0 || (vpd && strcmp (c->ident, ident) == 0))
        return true;
    }
  backend_key (e->cow, k, sizeof k);
  return strcmp (k, key) == 0;
}

static const char *
voldb_cow_user_key (const char *self, const char *key, const char *ident)
{
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    if (strcmp (e->name, self) != 0 && e->cow[0]
        && voldb_cow_is (e, key, ident))
      return e->name;
  return NULL;
}

const char *
voldb_cow_user_uri (const char *self, const char *uri)
{
  char key[sizeof ((struct backend *) 0)->key];
  backend_key (uri, key, sizeof key);
  return voldb_cow_user_key (self, key, NULL);
}

/* vol_params.cow_user: the opened device, which for a LUN also has its
 * VPD identity (two portals or names of one LUN). */
const char *
voldb_cow_user (void *ud, const struct backend *cow)
{
  return voldb_cow_user_key (ud, cow->key, cow->ident);
}

char *
voldb_socket_path (const struct vol_entry *e)
{
  char *p;
  if (asprintf (&p, "%s/%s.sock", cowd.run_dir, e->name) < 0)
    return NULL;
  return p;
}

void
voldb_backend_opts (struct backend_opts *bo)
{
  *bo = (struct backend_opts) {
    .direct = true,
    .initiator_name = cowd.initiator_name,
    .chap_user = cowd.chap_user,
    .chap_password = cowd.chap_password,
    .reconnect_deadline_ms = cowd.reconnect_deadline_ms,
  };
}

static bool
voldb_yes (const char *v)
{
  return strcmp (v, "yes") == 0 || strcmp (v, "true") == 0
    || strcmp (v, "1") == 0;
}

static int
voldb_key (void *ud, const char *section, const char *name, const char *key,
           const char *value, char *err, size_t errlen)
{
  struct vol_entry **cur = ud;
  if (strcmp (section, "volume") != 0 || name[0] == '\0')
    {
      snprintf (err, errlen, "expected [volume NAME] sections");
      return -1;
    }
  if (!*cur || strcmp ((*cur)->name, name) != 0)
    {
      if (!(*cur = voldb_find (name))
          && !(*cur = voldb_add (name, "", "", 0, DSCOW_COMMIT_SYNC)))
        return -1;
    }
  struct vol_entry *e = *cur;
  if (strcmp (key, "base") == 0)
    return free (e->base), (e->base = strdup (value)) ? 0 : -1;
  if (strcmp (key, "cow") == 0)
    return free (e->cow), (e->cow = strdup (value)) ? 0 : -1;
  if (strcmp (key, "chunk-size") == 0)
    return e->chunk_size = (uint32_t) strtoul (value, NULL, 10), 0;
  if (strcmp (key, "commit") == 0)
    return vol_commit_parse (value, &e->commit);
  if (strcmp (key, "exclusive") == 0)
    return e->exclusive = voldb_yes (value), 0;
  if (strcmp (key, "buffered") == 0)
    return e->buffered = voldb_yes (value), 0;
  if (strcmp (key, "attached") == 0)
    return e->attached = voldb_yes (value), 0;
  snprintf (err, errlen, "unknown key '%s' for volume %s", key, name);
  return -1;
}

static char *
voldb_path (const char *suffix)
{
  char *p;
  if (asprintf (&p, "%s/volumes.conf%s", cowd.state_dir, suffix) < 0)
    return NULL;
  return p;
}

int
voldb_load (char *err, size_t errlen)
{
  char *path = voldb_path ("");
  struct vol_entry *cur = NULL;
  if (!path)
    return -ENOMEM;
  int r = access (path, F_OK) == 0
    ? config_parse (path, voldb_key, &cur, err, errlen) : 0;
  free (path);
  return r;
}

static int
voldb_sync_dir (void)
{
  int fd = open (cowd.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int r = fsync (fd) < 0 ? -errno : 0;
  close (fd);
  return r;
}

int
voldb_save (void)
{
  char *path = voldb_path (""), *tmp = voldb_path (".tmp");
  int r = -ENOMEM;
  FILE *f = NULL;
  if (!path || !tmp || !(f = fopen (tmp, "w")))
    {
      r = -errno;
      goto out;
    }
  fprintf (f, "# cowd volume definitions; rewritten by cowd, edit with "
           "cowctl\n");
  for (struct vol_entry *e = cowd.vols; e; e = e->next)
    fprintf (f, "\n[volume %s]\nbase = %s\ncow = %s\nchunk-size = %" PRIu32
             "\ncommit = %s\nexclusive = %s\nbuffered = %s\nattached = %s\n",
             e->name, e->base, e->cow, e->chunk_size,
             vol_commit_name (e->commit), e->exclusive ? "yes" : "no",
             e->buffered ? "yes" : "no", e->attached ? "yes" : "no");
  if (fflush (f) != 0 || fsync (fileno (f)) < 0)
    r = -errno;
  else
    r = 0;
  if (fclose (f) != 0 && r == 0)
    r = -errno;
  if (r == 0 && rename (tmp, path) < 0)
    r = -errno;
  if (r == 0)
    r = voldb_sync_dir ();
out:
  if (r < 0)
    qb_log (LOG_ERR, "cowd: saving the volume table in %s failed: %s",
            cowd.state_dir, strerror (-r));
  free (path);
  free (tmp);
  return r;
}

int
voldb_attach (struct vol_entry *e, char *err, size_t errlen)
{
  if (e->vol)
    return 0;
  struct backend_opts bo;
  voldb_backend_opts (&bo);
#ifdef HAVE_COROSYNC
  if (cowd.clustered)
    fencing_backend_opts (&bo);
#endif
  bool no_base = strcmp (e->base, VOLDB_NO_BASE) == 0;
  struct vol_params p = { .name = e->name,
    .base_uri = no_base ? NULL : e->base,
    .cow_uri = e->cow, .chunk_size = e->chunk_size, .commit = e->commit,
    .buffered = e->buffered, .accept_base_change = e->accept_base_change,
    .cow_user = voldb_cow_user, .cow_user_ud = e->name };
  if ((!no_base && voldb_check_path (e->name, "base", e->base, err,
                                     errlen) < 0)
      || voldb_check_path (e->name, "CoW", e->cow, err, errlen) < 0)
    return -COW_E_BAD_DEVICE;
  const char *user = voldb_cow_user_uri (e->name, e->cow);
  if (user)
    return vol_err_cow_taken (err, errlen, e->name, e->cow, user);
  int r = vol_open (&p, &bo, &e->vol, err, errlen);
  if (r < 0)
    return r;
#ifdef HAVE_COROSYNC
  fencing_attach_blockdev (vol_cow_backend (e->vol));
#endif
  if (cowd.clustered)
    vol_set_state (e->vol, VOL_STATE_READONLY); /* until the group says */
  else if (e->commit != DSCOW_COMMIT_NONE
      && (r = vol_takeover (e->vol, vol_super (e->vol)->epoch, 0, 0, err,
                            errlen)) < 0)
    goto out_close;
  char *sock = voldb_socket_path (e);
  e->exp = sock ? nbd_export_new (e->vol, sock, err, errlen) : NULL;
  free (sock);
  r = -COW_E_INTERNAL;
  if (!e->exp)
    goto out_close;
  qb_log (LOG_INFO, "cowd: %s: attached (commit %s)", e->name,
          vol_commit_name (e->commit));
  voldb_set_error (e, NULL);
  return 0;

out_close:
  vol_close (e->vol, NULL, NULL);
  e->vol = NULL;
  return r;
}

struct detach_ctx
{
  struct vol_entry *e;
  vol_done_fn *done;
  void *opaque;
};

static void
voldb_detach_closed (void *opaque, int res)
{
  struct detach_ctx *dc = opaque;
  dc->e->vol = NULL;
  dc->e->closing = false;
  qb_log (LOG_INFO, "cowd: %s: detached", dc->e->name);
  if (dc->done)
    dc->done (dc->opaque, res);
  free (dc);
}

void
voldb_detach (struct vol_entry *e, vol_done_fn *done, void *opaque)
{
  struct detach_ctx *dc = malloc (sizeof *dc);
  if (!dc)
    abort ();
  *dc = (struct detach_ctx) { e, done, opaque };
  e->closing = true;
  if (e->exp)
    nbd_export_free (e->exp);
  e->exp = NULL;
  vol_close (e->vol, voldb_detach_closed, dc);
}
