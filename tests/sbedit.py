#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""sbedit.py DEVICE SLOT FIELD VALUE: set one field of a dscow superblock
slot and fix its crc32c, to make test devices that are wrong in exactly one
way (an unknown incompat feature, a future major version).  FIELD is
'incompat' (u64 at 24), 'major' (u16 at 8) or 'minor' (u16 at 10: minor 0
makes the base stamp at 304-343 reserved bytes again); 'crc' with VALUE
'break' corrupts the checksum instead."""
import struct, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

dev, slot, field, value = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(dev, 'r+b') as f:
    f.seek(slot * 4096)
    sb = bytearray(f.read(4096))
    if field == 'incompat':
        struct.pack_into('<Q', sb, 24, int(value, 0))
    elif field == 'major':
        struct.pack_into('<H', sb, 8, int(value, 0))
    elif field == 'minor':
        struct.pack_into('<H', sb, 10, int(value, 0))
    if field == 'crc':
        sb[4092] ^= 0xff
    else:
        struct.pack_into('<I', sb, 4092, crc32c(bytes(sb[:4092])))
    f.seek(slot * 4096)
    f.write(sb)
