/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz.h: what the fuzz targets share. */
#ifndef COWHERD_FUZZ_H
#define COWHERD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* An invariant the target checks: a crash libFuzzer reports. */
#define FUZZ_CHECK(cond)                                                       \
  do                                                                           \
    {                                                                          \
      if (!(cond))                                                             \
        abort ();                                                              \
    }                                                                          \
  while (0)

#endif
