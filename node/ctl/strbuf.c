/* SPDX-License-Identifier: GPL-2.0-or-later */
/* strbuf: a growable, always NUL-terminated string.  Allocation failure
 * aborts: cowd cannot do anything useful without memory for a reply. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "strbuf.h"

/* A buffer of SB_MAP_BYTES or more is mapped from the kernel and grows by
 * mremap, which moves its pages without copying them.  realloc copied:
 * the answer of a list of 100,000 volumes is 30 MB, and on a
 * paravirtualised host one of its doublings took 56 ms, in one slice of
 * the loop (a test program growing a buffer the same way). */
#define SB_MAP_BYTES (1u << 20)

static char *
sb_realloc (struct strbuf *sb, size_t cap)
{
  if (cap < SB_MAP_BYTES)
    return realloc (sb->s, cap);
  void *p = sb->cap >= SB_MAP_BYTES
                ? mremap (sb->s, sb->cap, cap, MREMAP_MAYMOVE)
                : mmap (NULL, cap, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  if (sb->cap < SB_MAP_BYTES && sb->s)
    {
      memcpy (p, sb->s, sb->len + 1);
      free (sb->s);
    }
  return p;
}

static void
sb_grow (struct strbuf *sb, size_t need)
{
  if (sb->len + need + 1 <= sb->cap)
    return;
  size_t cap = sb->cap ? sb->cap : 256;
  while (cap < sb->len + need + 1)
    cap *= 2;
  char *s = sb_realloc (sb, cap);
  if (!s)
    abort ();
  sb->s = s;
  sb->cap = cap;
}

void
sb_vprintf (struct strbuf *sb, const char *fmt, va_list ap)
{
  /* Format once into the room there is; only what does not fit is
   * formatted again, into a buffer grown for it (a list of 100,000
   * volumes is mostly printf). */
  va_list ap2;
  va_copy (ap2, ap);
  sb_grow (sb, 0);
  size_t room = sb->cap - sb->len;
  int n = vsnprintf (sb->s + sb->len, room, fmt, ap2);
  va_end (ap2);
  if (n < 0)
    {
      sb->s[sb->len] = '\0';
      return;
    }
  if ((size_t) n >= room)
    {
      sb_grow (sb, (size_t) n);
      vsnprintf (sb->s + sb->len, (size_t) n + 1, fmt, ap);
    }
  sb->len += (size_t) n;
}

void
sb_printf (struct strbuf *sb, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  sb_vprintf (sb, fmt, ap);
  va_end (ap);
}

void
sb_put (struct strbuf *sb, const void *p, size_t n)
{
  sb_grow (sb, n);
  memcpy (sb->s + sb->len, p, n);
  sb->len += n;
  sb->s[sb->len] = '\0';
}

void
sb_puts (struct strbuf *sb, const char *s)
{
  sb_put (sb, s, strlen (s));
}

void
sb_json_str (struct strbuf *sb, const char *s)
{
  sb_puts (sb, "\"");
  for (; s && *s; s++)
    {
      unsigned char c = (unsigned char) *s;
      if (c == '"' || c == '\\')
        sb_printf (sb, "\\%c", c);
      else if (c < 0x20)
        sb_printf (sb, "\\u%04x", c);
      else
        sb_printf (sb, "%c", c);
    }
  sb_puts (sb, "\"");
}

void
sb_json_str_or_null (struct strbuf *sb, const char *s)
{
  if (s)
    sb_json_str (sb, s);
  else
    sb_puts (sb, "null");
}

const char *
sb_str (struct strbuf *sb)
{
  return sb->s ? sb->s : "";
}

void
sb_reset (struct strbuf *sb)
{
  sb->len = 0;
  if (sb->s)
    sb->s[0] = '\0';
}

void
sb_free (struct strbuf *sb)
{
  if (sb->cap >= SB_MAP_BYTES)
    munmap (sb->s, sb->cap);
  else
    free (sb->s);
  sb->s = NULL;
  sb->len = sb->cap = 0;
}
