"""Hold many WebSocket calls through nginx at once, and say what happened to each.

Runs on the machine under test (stdlib plus python3-websockets, from Debian),
against loopback only. The calls are split over --processes processes, each
opening its share --concurrency at a time; once every call is up, all of them
hold for --hold seconds, each echoing a message every --ping seconds through
nginx to its worker and back, then hang up. A call that cannot connect is
refused; one closed before the end is dropped.

    python3 callhold.py --calls 10000 --processes 4 --hold 60 --ping 5

Prints one JSON summary: calls connected per worker, refused and dropped
(with reasons), the time to connect them all, and echo round trips.
--steps 1000,2000,... holds the calls in steps instead and prints one JSON
line per step, after --settle seconds at each; a --sample command runs then
and its output is part of the line (the capacity benchmark reads the
workers' loop lag and memory that way).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import resource
import ssl
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

import websockets
from loadgen import describe, is_loopback, worker_of  # type: ignore[import-not-found]


def raise_open_files() -> None:
    """Every call is a socket: as many as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Holder:
    """One process's share of the calls."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url
        self.tls = (ssl.create_default_context(cafile=args.cacert)
                    if args.url.startswith("wss") else None)
        self.slots = asyncio.Semaphore(args.concurrency)
        self.ping = args.ping
        self.by_host = args.by_host
        self.hang_up = asyncio.Event()
        self.per_worker: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.round_trips: list[float] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, count: int) -> list[asyncio.Event]:
        connected = [asyncio.Event() for _ in range(count)]
        for event in connected:
            task = asyncio.create_task(self.call(event))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return connected

    async def call(self, connected: asyncio.Event) -> None:
        try:
            async with self.slots:
                # No compression and no library pings: the calls' own echoes are the traffic.
                ws = await asyncio.wait_for(websockets.connect(
                    self.url, ssl=self.tls, compression=None, ping_interval=None,
                    open_timeout=30), 60)
                worker = worker_of(json.loads(await asyncio.wait_for(ws.recv(), 30)),
                                   self.by_host)
        except Exception as exc:  # every failure counts, whatever its kind
            self.refused[describe(exc)] += 1
            connected.set()
            return
        self.per_worker[worker] += 1
        connected.set()
        try:
            while not self.hang_up.is_set():
                try:
                    await asyncio.wait_for(self.hang_up.wait(), self.ping)
                    break
                except TimeoutError:
                    pass
                sent = time.monotonic()
                await ws.send("ping")
                if await asyncio.wait_for(ws.recv(), 30) != "ping":
                    raise RuntimeError("wrong echo")
                self.round_trips.append(time.monotonic() - sent)
            await ws.close()
        except Exception as exc:
            self.dropped[describe(exc)] += 1

    def report(self) -> dict[str, object]:
        trips = sorted(self.round_trips)
        return {"per_worker": dict(self.per_worker), "refused": dict(self.refused),
                "dropped": dict(self.dropped), "round_trips": len(trips),
                "round_trip_p95_ms": round(trips[int(0.95 * (len(trips) - 1))] * 1000, 1)
                if trips else None}


def child(args: argparse.Namespace, share: list[int], pipe: Connection) -> None:
    """One process: open its share step by step, report, hold, hang up, report."""
    raise_open_files()

    async def run() -> None:
        holder = Holder(args)
        for count in share:
            await asyncio.gather(*(event.wait() for event in holder.add(count)))
            pipe.send(("up", holder.report()))
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # go on, or hold
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # hang up
        holder.hang_up.set()
        while holder.tasks:
            await asyncio.gather(*list(holder.tasks))
        pipe.send(("done", holder.report()))

    asyncio.run(run())


def merge(reports: list[dict[str, object]]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for key in ("per_worker", "refused", "dropped"):
        total: collections.Counter[str] = collections.Counter()
        for report in reports:
            total.update(report[key])  # type: ignore[arg-type]
        merged[key] = dict(sorted(total.items()))
    merged["connected"] = sum(merged["per_worker"].values())  # type: ignore[union-attr]
    merged["round_trips"] = sum(int(r["round_trips"]) for r in reports)  # type: ignore[call-overload]
    p95s = [r["round_trip_p95_ms"] for r in reports if r["round_trip_p95_ms"] is not None]
    merged["round_trip_p95_ms"] = max(p95s) if p95s else None  # type: ignore[type-var]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://localhost", help="nginx, on this machine")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--steps", help="hold this many calls in turn (comma-separated, rising)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50,
                        help="handshakes in flight per process")
    parser.add_argument("--hold", type=float, default=60, help="seconds all calls stay up")
    parser.add_argument("--ping", type=float, default=5, help="seconds between echoes")
    parser.add_argument("--settle", type=float, default=10, help="seconds at each step")
    parser.add_argument("--sample", help="a command whose output each step reports")
    parser.add_argument("--cacert", help="CA file to trust for an https:// base")
    parser.add_argument("--by-host", action="store_true",
                        help="name workers host:port (the workers of several hosts)")
    args = parser.parse_args()
    parts = urlsplit(args.base)
    if not is_loopback(parts.hostname or "localhost"):
        sys.exit("callhold: only targets on this machine (loopback) are allowed")
    scheme = "wss" if parts.scheme == "https" else "ws"
    args.url = f"{scheme}://{parts.netloc}/api/v1/call"
    steps = [int(step) for step in args.steps.split(",")] if args.steps else [args.calls]
    added = [later - earlier for earlier, later in zip([0, *steps], steps, strict=False)]
    shares = [[count // args.processes + (i < count % args.processes) for count in added]
              for i in range(args.processes)]
    pipes, processes = [], []
    for share in shares:
        parent, child_end = multiprocessing.Pipe()
        process = multiprocessing.Process(target=child, args=(args, share, child_end))
        process.start()
        pipes.append(parent)
        processes.append(process)
    started = time.monotonic()
    for index, step in enumerate(steps):
        reports = [pipe.recv()[1] for pipe in pipes]
        up = merge(reports)
        line = {"step": step, "connect_seconds": round(time.monotonic() - started, 1), **up}
        if args.steps:
            time.sleep(args.settle)
            if args.sample:
                line["sample"] = json.loads(subprocess.run(args.sample, shell=True, check=True,
                                                           capture_output=True,
                                                           text=True).stdout)
            print(json.dumps(line), flush=True)
        if index + 1 < len(steps):
            for pipe in pipes:
                pipe.send("go on")
    for pipe in pipes:
        pipe.send("hold")
    time.sleep(args.hold)
    for pipe in pipes:
        pipe.send("hang up")
    done = merge([pipe.recv()[1] for pipe in pipes])
    for process in processes:
        process.join()
    print(json.dumps({"calls": steps[-1], "connect_seconds": line["connect_seconds"],
                      "held_seconds": args.hold, **done}), flush=True)


if __name__ == "__main__":
    main()
