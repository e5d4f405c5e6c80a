"""WebSocket load for ``benchmarks/server.py``: one process holding many subscribed sockets.

    python benchmarks/ws_clients.py ws://127.0.0.1:PORT/ws CLIENTS BROADCASTS

Opens CLIENTS sockets, subscribes each to ``player``, prints ``READY`` once all have, records
for every ``player.state`` message how long after its ``sent`` time (epoch seconds) it arrived,
answers pings, and when every socket has seen BROADCASTS messages (or after a minute) prints one
JSON line: ``{"latencies_s": [...], "connect_s": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import websockets

FILE_LIMIT = 8192
WAIT_S = 60.0


async def _client(url: str, broadcasts: int, ready: asyncio.Semaphore, out: list[float]) -> None:
    async with websockets.connect(url, max_queue=None, open_timeout=WAIT_S) as sock:
        await asyncio.wait_for(sock.recv(), WAIT_S)  # welcome
        await sock.send(json.dumps({"type": "subscribe", "data": {"topics": ["player"]}}))
        while json.loads(await asyncio.wait_for(sock.recv(), WAIT_S))["type"] != "subscribed":
            pass
        ready.release()
        seen = 0
        while seen < broadcasts:
            message = json.loads(await asyncio.wait_for(sock.recv(), WAIT_S))
            if message["type"] == "ping":
                await sock.send(json.dumps({"type": "pong"}))
            elif message["type"] == "player.state":
                out.append(time.time() - message["data"]["sent"])
                seen += 1


async def _main(url: str, clients: int, broadcasts: int) -> None:
    ready = asyncio.Semaphore(0)
    latencies: list[float] = []
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(_client(url, broadcasts, ready, latencies)) for _ in range(clients)
    ]
    for _ in range(clients):
        await asyncio.wait_for(ready.acquire(), WAIT_S * 2)
    connect_s = time.perf_counter() - started
    print("READY", flush=True)
    await asyncio.wait(tasks, timeout=WAIT_S)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"latencies_s": latencies, "connect_s": connect_s}), flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(FILE_LIMIT, hard), hard))
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
