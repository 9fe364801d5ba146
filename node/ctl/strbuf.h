/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A growable string buffer, and JSON string quoting for --json output. */
#ifndef COWD_STRBUF_H
#define COWD_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf
{
  char *s; /* always NUL-terminated once used */
  size_t len, cap;
};

#define STRBUF_INIT                                                            \
  {                                                                            \
    NULL, 0, 0                                                                 \
  }

void sb_printf (struct strbuf *sb, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
void sb_vprintf (struct strbuf *sb, const char *fmt, va_list ap)
    __attribute__ ((format (printf, 2, 0)));
void sb_puts (struct strbuf *sb, const char *s);
/* Append n bytes (NUL-terminated after them). */
void sb_put (struct strbuf *sb, const void *p, size_t n);
/* Append s as a JSON string literal, quotes included. */
void sb_json_str (struct strbuf *sb, const char *s);
/* The same, or null when s is NULL. */
void sb_json_str_or_null (struct strbuf *sb, const char *s);
const char *sb_str (struct strbuf *sb); /* "" when empty */
void sb_reset (struct strbuf *sb);
void sb_free (struct strbuf *sb);
/* Move src's buffer into dst (freed first); src is left empty. */
static inline void
sb_move (struct strbuf *dst, struct strbuf *src)
{
  sb_free (dst);
  *dst = *src;
  src->s = NULL;
  src->len = src->cap = 0;
}

#endif
