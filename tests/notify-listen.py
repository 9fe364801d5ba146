#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# notify-listen.py: a service manager's end of sd_notify, for the tests.
#
#   notify-listen.py SOCKET LOG CHECK-CMD...
#
# Binds the datagram socket SOCKET (what systemd passes as $NOTIFY_SOCKET),
# appends every message to LOG, one "MSG <line>" per line, and the moment
# READY=1 arrives runs CHECK-CMD and logs "CHECK <exit status> <stdout>":
# what a unit ordered After=cowd.service would see at that instant.  Exits
# after STOPPING=1 or when killed.
import os
import socket
import subprocess
import sys

path, log = sys.argv[1], sys.argv[2]
check = sys.argv[3:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(log, "a", buffering=1) as out:
    out.write("LISTENING\n")
    while True:
        msg = s.recv(4096).decode()
        for line in msg.splitlines():
            out.write("MSG %s\n" % line)
        if "READY=1" in msg.splitlines():
            r = subprocess.run(check, capture_output=True, text=True)
            out.write("CHECK %d %s\n" % (r.returncode, r.stdout.strip().replace("\n", " ")))
        if "STOPPING=1" in msg.splitlines():
            break
os.unlink(path)
