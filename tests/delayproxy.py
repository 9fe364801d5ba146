#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""delayproxy.py: a TCP proxy that makes a server slow, for tests.

  delayproxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS SWITCH_FILE

Listens on 0.0.0.0:LISTEN_PORT and forwards every connection to
TARGET_HOST:TARGET_PORT.  While SWITCH_FILE exists, every piece of the
server's answer is passed on DELAY_MS after it arrived, in order (a slow
storage link; the kernel here has no netem); otherwise at once.  Prints
"ready" once listening.
"""
import asyncio
import os
import sys
import time


async def pump(reader, writer, delay, switch):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            d = delay if delay and os.path.exists(switch) else 0
            await queue.put((time.monotonic() + d, data))
    finally:
        await queue.put((0, None))
        await sender


async def main():
    listen, delay_ms, switch = int(sys.argv[1]), float(sys.argv[3]), sys.argv[4]
    host, port = sys.argv[2].rsplit(":", 1)

    async def handle(creader, cwriter):
        try:
            treader, twriter = await asyncio.open_connection(host, int(port))
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pump(creader, twriter, 0, switch),
                             pump(treader, cwriter, delay_ms / 1000, switch),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "0.0.0.0", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
