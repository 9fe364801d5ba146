#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""soakload.py: the workload of one volume in the soak (tests/soak/soak.sh),
a client that follows the volume from host to host and keeps a ledger of
every write it had acknowledged (libnbd's Python binding).

  soakload.py run VOL LABDIR BLOCKS RATE FIOEVERY FIOAREA
      Writes 4 KiB blocks at random indexes below BLOCKS, RATE a second,
      one at a time, each self-describing: magic, volume, index,
      generation (per block, +1 at every attempt), the block's content
      derived from those, and a CRC-32 of the rest.  The host to write to
      is the one LABDIR/hint.VOL names (the soak changes it when the
      volume moves); the socket is LABDIR/hN/run/VOL.sock.  A write that
      fails or gets no answer within 20 s drops the connection (the
      attempt stays in the ledger as not acknowledged) and the client
      connects again to the host the hint names.
      Every FIOEVERY seconds (0: never) a segment of fio
      (ioengine=nbd, random 4 KiB writes, verify=crc32c, do_verify) writes
      and verifies one 1 MiB slice of the FIOAREA MiB after the blocks,
      slices in turn, on the current host.
      SIGUSR1 pauses (like a suspended domain: the write or fio segment in
      progress finishes, then LABDIR/paused.VOL appears), SIGUSR2 resumes
      (the hint is read again).  SIGTERM ends the run: the ledger goes to
      LABDIR/ledger.VOL.json, the fio record to LABDIR/fio.VOL.json.
  soakload.py verify VOL LABDIR BASE URI
      Reads every block of the ledger through URI: a block must hold the
      generation of its last acknowledged write or a later attempt (never
      an older one, never a torn or foreign block); a block never
      acknowledged may still read as BASE (the volume's base) at its
      offset.  Then for every fio slice whose last segment completed, fio
      --verify_only with that segment's seed: the data fio wrote and
      verified then is still there.  Prints a JSON summary; exit 1 when
      any violation was found.
"""
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib

import nbd

BLOCK = 4096
MAGIC = b"COWSOAK1"
HEAD = struct.Struct("<8s16sIQ")          # magic, volume, index, generation
TIMEOUT = 20.0
SLICE = 1 << 20


def content(vol, index, gen):
    head = HEAD.pack(MAGIC, vol.encode()[:16], index, gen)
    body = random.Random("%s/%d/%d" % (vol, index, gen)).randbytes(
        BLOCK - len(head) - 4)
    data = head + body
    return data + struct.pack("<I", zlib.crc32(data))


def decode(vol, data):
    """(generation, None) for an intact block of ours, (None, why) else."""
    magic, v, index, gen = HEAD.unpack_from(data)
    if magic != MAGIC:
        return None, "not a soak block"
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, BLOCK - 4)[0]:
        return None, "torn or corrupt (CRC mismatch), generation %d" % gen
    if v.rstrip(b"\0") != vol.encode()[:16]:
        return None, "a block of volume %r" % v.rstrip(b"\0")
    return gen, None


def sock(labdir, host, vol):
    return os.path.join(labdir, "h%s" % host, "run", vol + ".sock")


def wait_cmd(h, cookie, deadline):
    while True:
        if h.aio_command_completed(cookie):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer within %.0f s" % TIMEOUT)
        h.poll(int(min(left, 1.0) * 1000))


def connect(path, deadline):
    h = nbd.NBD()
    h.aio_connect_unix(path)
    while not h.aio_is_ready():
        if h.aio_is_dead() or h.aio_is_closed():
            raise nbd.Error("connection to %s failed" % path)
        if time.monotonic() > deadline:
            raise TimeoutError("no handshake from %s" % path)
        h.poll(200)
    return h


class Run:
    def __init__(self, vol, labdir, blocks, rate, fio_every, fio_area):
        self.vol, self.labdir = vol, labdir
        self.blocks, self.rate = blocks, rate
        self.fio_every, self.fio_slices = fio_every, fio_area
        self.acked = {}          # index -> last acknowledged generation
        self.tried = {}          # index -> last generation attempted
        self.n_acked = self.n_failed = self.n_reconnects = 0
        self.fio = {"segments": 0, "ok": 0, "failed": 0, "verify_errors": 0,
                    "slices": {}, "errors": []}
        self.paused = self.stop = False
        self.h = None
        self.host = None
        self.rng = random.Random()
        signal.signal(signal.SIGUSR1, self.on_pause)
        signal.signal(signal.SIGUSR2, self.on_resume)
        signal.signal(signal.SIGTERM, self.on_stop)

    def on_pause(self, *_):
        self.paused = True

    def on_resume(self, *_):
        self.paused = False

    def on_stop(self, *_):
        self.stop = True

    def hint(self):
        with open(os.path.join(self.labdir, "hint." + self.vol)) as f:
            return f.read().strip()

    def drop(self):
        # No NBD_CMD_DISC: libnbd's shutdown waits for the commands in
        # flight, which a server holding them may never answer.  Dropping
        # the handle closes the socket.
        self.h = None

    def ensure(self):
        host = self.hint()
        if self.h is not None and host == self.host:
            return True
        self.drop()
        try:
            self.h = connect(sock(self.labdir, host, self.vol),
                             time.monotonic() + 5)
            self.host = host
            self.n_reconnects += 1
            return True
        except (nbd.Error, TimeoutError, OSError):
            self.h = None
            time.sleep(0.05)
            return False

    def write_one(self):
        i = self.rng.randrange(self.blocks)
        gen = self.tried.get(i, 0) + 1
        self.tried[i] = gen
        buf = nbd.Buffer.from_bytearray(bytearray(content(self.vol, i, gen)))
        try:
            cookie = self.h.aio_pwrite(buf, i * BLOCK)
            wait_cmd(self.h, cookie, time.monotonic() + TIMEOUT)
        except (nbd.Error, TimeoutError) as e:
            self.n_failed += 1
            print("soakload %s: block %d generation %d on host %s: %s; "
                  "connecting again" % (self.vol, i, gen, self.host, e),
                  file=sys.stderr, flush=True)
            self.drop()
            time.sleep(0.05)
            return
        self.acked[i] = gen
        self.n_acked += 1

    def fio_segment(self):
        k = self.fio["segments"] % self.fio_slices
        seed = self.rng.randrange(1, 1 << 31)
        self.fio["segments"] += 1
        off = self.blocks * BLOCK + k * SLICE
        rc, out = fio(sock(self.labdir, self.host, self.vol), off, seed, False)
        s = self.fio["slices"].setdefault(str(k), {})
        if rc == 0:
            self.fio["ok"] += 1
            s.update(seed=seed, offset=off, ok=True)
        else:
            self.fio["failed"] += 1
            s.update(seed=seed, offset=off, ok=False)
            if "verify" in out and "bad" in out:
                self.fio["verify_errors"] += 1
            self.fio["errors"].append("slice %d on host %s: %s" % (
                k, self.host, " ".join(out.split()[-30:])))
            self.drop()             # fio failed: the volume may have moved

    def loop(self):
        pausefile = os.path.join(self.labdir, "paused." + self.vol)
        period = 1.0 / self.rate
        next_fio = time.monotonic() + self.fio_every
        t = time.monotonic()
        while not self.stop:
            if self.paused:
                open(pausefile, "w").close()
                while self.paused and not self.stop:
                    time.sleep(0.005)
                os.unlink(pausefile)
                t = time.monotonic()
                continue
            if not self.ensure():
                continue
            if self.fio_every and time.monotonic() >= next_fio:
                self.fio_segment()
                next_fio = time.monotonic() + self.fio_every
                continue
            self.write_one()
            t += period
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                t = time.monotonic()
        self.drop()
        ledger = {"acked": self.acked, "tried": self.tried,
                  "n_acked": self.n_acked, "n_failed": self.n_failed,
                  "n_reconnects": self.n_reconnects, "blocks": self.blocks}
        for name, obj in (("ledger", ledger), ("fio", self.fio)):
            tmp = os.path.join(self.labdir, "%s.%s.json.tmp" % (name, self.vol))
            with open(tmp, "w") as f:
                json.dump(obj, f)
            os.rename(tmp, tmp[:-4])


def fio(path, offset, seed, verify_only):
    args = ["fio", "--name=soak", "--ioengine=nbd",
            "--uri=nbd+unix:///?socket=" + path, "--rw=randwrite",
            "--bs=4k", "--iodepth=8", "--offset=%d" % offset,
            "--size=%d" % SLICE, "--randseed=%d" % seed,
            "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0",
            "--output-format=terse"]
    args += ["--verify_only=1"] if verify_only else ["--do_verify=1"]
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60, text=True)
    except subprocess.TimeoutExpired:
        return 124, "fio did not finish within 60 s"
    return p.returncode, p.stdout


def verify(vol, labdir, base, uri):
    with open(os.path.join(labdir, "ledger.%s.json" % vol)) as f:
        led = json.load(f)
    with open(os.path.join(labdir, "fio.%s.json" % vol)) as f:
        fiorec = json.load(f)
    acked = {int(k): v for k, v in led["acked"].items()}
    tried = {int(k): v for k, v in led["tried"].items()}
    h = nbd.NBD()
    h.connect_uri(uri)
    bad = []
    newer = 0
    with open(base, "rb") as bf:
        for i in sorted(tried):
            data = h.pread(BLOCK, i * BLOCK)
            gen, why = decode(vol, data)
            a = acked.get(i, 0)
            if gen is None:
                bf.seek(i * BLOCK)
                if a == 0 and data == bf.read(BLOCK):
                    continue
                bad.append("block %d: %s; last acknowledged generation %d"
                           % (i, why, a))
            elif gen < a or gen > tried[i]:
                bad.append("block %d holds generation %d; last acknowledged "
                           "%d, last attempted %d" % (i, gen, a, tried[i]))
            elif data != content(vol, i, gen):
                bad.append("block %d generation %d: wrong content" % (i, gen))
            elif gen > a:
                newer += 1
    slices_ok = slices_bad = 0
    for k, s in sorted(fiorec["slices"].items()):
        if not s.get("ok"):
            continue
        rc, out = fio(uri.split("socket=", 1)[1], s["offset"], s["seed"], True)
        if rc == 0:
            slices_ok += 1
        else:
            slices_bad += 1
            bad.append("fio slice %s (seed %d) does not verify: %s"
                       % (k, s["seed"], " ".join(out.split()[-30:])))
    print(json.dumps({"volume": vol, "acked_writes": led["n_acked"],
                      "failed_writes": led["n_failed"],
                      "reconnects": led["n_reconnects"],
                      "blocks_verified": len(tried),
                      "blocks_newer_unacked": newer,
                      "fio_segments": fiorec["segments"],
                      "fio_ok": fiorec["ok"], "fio_failed": fiorec["failed"],
                      "fio_verify_errors": fiorec["verify_errors"],
                      "fio_slices_reverified": slices_ok,
                      "fio_slices_bad": slices_bad,
                      "violations": len(bad) + fiorec["verify_errors"],
                      "details": bad[:20] + fiorec["errors"][-5:]}))
    return 1 if bad or fiorec["verify_errors"] else 0


def main():
    a = sys.argv
    if len(a) == 8 and a[1] == "run":
        Run(a[2], a[3], int(a[4]), float(a[5]), float(a[6]),
            int(a[7])).loop()
    elif len(a) == 6 and a[1] == "verify":
        sys.exit(verify(a[2], a[3], a[4], a[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
