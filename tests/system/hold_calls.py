"""Open N WebSocket "calls" through nginx, one after another, and hold them.

Runs inside the test container (Debian's python3-websockets). Prints one JSON
line {"per_port": {port: calls}} once every call is up, keeps them open and
echoing until stdin closes, then hangs up and prints {"closed_early": n}.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys

import websockets


async def main(url: str, count: int) -> None:
    calls = []
    per_port: collections.Counter[int] = collections.Counter()
    for _ in range(count):
        ws = await websockets.connect(url)
        hello = json.loads(await ws.recv())
        per_port[hello["port"]] += 1
        calls.append(ws)
    print(json.dumps({"per_port": per_port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    closed_early = 0
    for ws in calls:
        try:
            await ws.send("still there?")
            await ws.recv()
        except websockets.ConnectionClosed:
            closed_early += 1
        await ws.close()
    print(json.dumps({"closed_early": closed_early}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
