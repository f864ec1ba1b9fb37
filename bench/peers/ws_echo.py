#!/usr/bin/python3
"""ws_echo.py - the python3-websockets (Debian's) WebSocket echo server, a
peer in bench/compare's ws section: every message goes back as it came
(text as text, binary as binary), any path, no compression, no keep-alive
pings of its own.

  /usr/bin/python3 bench/peers/ws_echo.py PORT [HOST (127.0.0.1)]

Prints "listening on HOST:PORT" once it listens; exits 0 on SIGTERM or
SIGINT."""

import asyncio
import signal
import sys

import websockets


async def echo(ws, *_path):  # websockets < 10.1 passes the path too
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(host, port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with websockets.serve(echo, host, port, compression=None, ping_interval=None,
                                max_size=1 << 24) as server:
        addr, real = server.sockets[0].getsockname()[:2]
        print("listening on %s:%d" % (addr, real), flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or not sys.argv[1].isdigit():
        print("usage: ws_echo.py PORT [HOST]", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[2] if len(sys.argv) == 3 else "127.0.0.1", int(sys.argv[1])))
