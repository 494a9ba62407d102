#!/usr/bin/env python3
"""Holds open websocket tabs against flarum-ws as a forum's visitors do, for
packaging/verify.sh: each tab subscribes to a private channel of its own,
and when the server closes it (4200 at a restart) it connects again at once
and subscribes again, as pusher-js does. Each subscription is a channel
authorization the forum's PHP would answer; the tabs count them per second.
Runs until SIGUSR1 (or SECONDS at most), then waits up to 30 s for every
tab to be subscribed again, and prints one JSON line: the tabs, how many
were open at the end, reconnections, the most authorizations in one second,
how long after the last close every tab was back, and the errors met.

Only Debian's python3 is there inside the booted systemd, so this speaks
the websocket protocol itself (RFC 6455, the little a tab needs).

    tabs.py PORT KEY SECRET TABS SECONDS      (then kill -USR1 it)
"""
import asyncio
import base64
import collections
import hashlib
import hmac
import json
import os
import signal
import struct
import sys
import time


class Counters:
    def __init__(self):
        self.open = 0
        self.reconnects = 0
        self.auths = collections.Counter()
        self.errors = collections.Counter()
        self.last_close = None
        self.all_back_after = None


def frame(payload):
    """A masked text frame (clients must mask; a zero key keeps it simple)."""
    data = payload.encode()
    length = len(data)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    else:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    return head + b"\0\0\0\0" + data


async def read_frame(reader):
    first, second = await reader.readexactly(2)
    opcode, length = first & 0x0F, second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return opcode, await reader.readexactly(length)


async def session(port, key, secret, channel, counters, state):
    """One connection's life: connect, subscribe, read until closed.
    Returns the close code (None when the connection broke); sets
    state["open"] while subscribed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        nonce = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /app/{key}?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            counters.errors[head.split(b"\r\n", 1)[0].decode(errors="replace")] += 1
            return None
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if opcode == 0x9:
                writer.write(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0\0\0\0" + payload)
                continue
            if opcode != 0x1:
                continue
            message = json.loads(payload)
            if message.get("event") == "pusher:connection_established":
                socket_id = json.loads(message["data"])["socket_id"]
                signature = hmac.new(
                    secret.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256
                ).hexdigest()
                counters.auths[int(time.monotonic())] += 1
                writer.write(
                    frame(
                        json.dumps(
                            {
                                "event": "pusher:subscribe",
                                "data": {"channel": channel, "auth": f"{key}:{signature}"},
                            }
                        )
                    )
                )
            elif message.get("event") == "pusher_internal:subscription_succeeded" and not state["open"]:
                state["open"] = True
                counters.open += 1
    finally:
        writer.close()


async def tab(number, port, key, secret, counters):
    channel = f"private-tab-{number}"
    first = True
    while True:
        if not first:
            counters.reconnects += 1
        first = False
        state = {"open": False}
        try:
            code = await session(port, key, secret, channel, counters, state)
        except (OSError, asyncio.IncompleteReadError) as error:
            counters.errors[type(error).__name__] += 1
            code = None
        if state["open"]:
            counters.open -= 1
        counters.last_close = time.monotonic()
        if code != 4200:
            # pusher-js waits before retrying a broken connection.
            await asyncio.sleep(1)


async def watch_back(tabs, counters):
    """How long after the last close every tab was subscribed again."""
    while True:
        await asyncio.sleep(0.05)
        if counters.last_close and counters.open >= tabs and counters.all_back_after is None:
            counters.all_back_after = round(time.monotonic() - counters.last_close, 2)
        elif counters.open < tabs:
            counters.all_back_after = None


async def main():
    port, key, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    tabs, seconds = int(sys.argv[4]), float(sys.argv[5])
    counters = Counters()
    deadline = time.monotonic() + seconds
    told = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, told.set)
    tasks = []
    # Opened 500 at a time, as visitors arrive over a morning, not at once.
    for number in range(tabs):
        tasks.append(asyncio.create_task(tab(number, port, key, secret, counters)))
        if number % 500 == 499:
            await asyncio.sleep(0.2)
    watcher = asyncio.create_task(watch_back(tabs, counters))
    try:
        await asyncio.wait_for(told.wait(), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        pass
    # Told to finish: time for the last restart's tabs to come back.
    settle = time.monotonic() + 30
    while time.monotonic() < settle and counters.open < tabs:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.1)
    watcher.cancel()
    for task in tasks:
        task.cancel()
    print(
        json.dumps(
            {
                "tabs": tabs,
                "open_at_end": counters.open,
                "reconnections": counters.reconnects,
                "auth_peak_per_second": max(counters.auths.values(), default=0),
                "all_back_after_s": counters.all_back_after,
                "errors": dict(counters.errors),
            }
        )
    )


asyncio.run(main())
