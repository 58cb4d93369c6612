"""Load generator: steady HTTP requests plus WebSocket "calls" through nginx.

Runs on the machine under test (stdlib plus the websockets library, both from
Debian), against loopback only, and stops by itself after --duration seconds
plus the length of the calls still running. Each call connects to
``/api/v1/call``, learns which worker took it from the first message, and
exchanges a message every --ping seconds until its planned end; a call closed
before that end is reported, as is every failed or non-2xx request.

Prints one JSON line ``{"event": "warm"}`` once the --initial-calls are up,
then one JSON summary line at the end:
requests (ok, failed, errors, per worker), calls (started, completed,
closed early, failed to connect, per worker) and a timeline of live calls
per worker, sampled every second.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import ipaddress
import json
import random
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    retried: int = 0  # sent again after a reused connection closed first (--keep-alive)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    per_worker: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Calls:
    started: int = 0
    completed: int = 0
    closed_early: int = 0
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    per_worker: collections.Counter[str] = field(default_factory=collections.Counter)
    live: collections.Counter[str] = field(default_factory=collections.Counter)


WORKER_PATH = "/api/v1/worker"


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        parts = urlsplit(args.base)
        self.tls = ssl.create_default_context(cafile=args.cacert) if parts.scheme == "https" \
            else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.ws_url = f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/api/v1/call"
        self.requests = Tally()
        self.calls = Calls()
        self.timeline: list[dict[str, object]] = []
        self.pool = ThreadPoolExecutor(max_workers=64)
        self.local = threading.local()  # each thread's open connection, with --keep-alive
        self.start = time.monotonic()

    # -- HTTP ------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=10,
                                               context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def _get(self) -> str:
        """One request: on a connection of its own, or with --keep-alive on this thread's
        open one, sent again on a new connection only when the reused one closed before
        any byte of the response (what RFC 9112 lets a client retry)."""
        reused: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        self.local.conn = None
        response = None
        if reused is not None:
            try:
                response = self._send(reused)
                conn = reused
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                reused.close()
                self.requests.retried += 1
        if response is None:
            conn = self._connect()
        try:
            if response is None:
                response = self._send(conn)
            body = response.read()
        except Exception:
            conn.close()
            raise
        if self.args.keep_alive and not response.will_close:
            self.local.conn = conn
        else:
            conn.close()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"HTTP {response.status}")
        if self.args.path != WORKER_PATH:
            return "any"  # another app's path: which worker answered is not said
        return worker_of(json.loads(body), self.args.by_host)

    def _send(self, conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
        """The request sent and the response's status line and headers read."""
        conn.request("GET", self.args.path)
        return conn.getresponse()

    async def _request(self) -> None:
        try:
            worker = await asyncio.get_running_loop().run_in_executor(self.pool, self._get)
        except Exception as exc:  # every failure counts, whatever its kind
            self.requests.failed += 1
            self.requests.errors[describe(exc)] += 1
        else:
            self.requests.ok += 1
            self.requests.per_worker[worker] += 1

    async def http_load(self, until: float) -> None:
        if self.args.rps <= 0:
            return
        tasks = set()
        interval = 1 / self.args.rps
        next_at = time.monotonic()
        while next_at < until:
            task = asyncio.create_task(self._request())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)

    # -- calls -----------------------------------------------------------------

    def _call_length(self) -> float:
        jitter = self.args.call_seconds * self.args.jitter
        return max(0.5, self.args.call_seconds + random.uniform(-jitter, jitter))

    async def call(self, up: asyncio.Event | None = None) -> None:
        self.calls.started += 1
        length = self._call_length()
        try:
            ws = await asyncio.wait_for(websockets.connect(self.ws_url, ssl=self.tls), 10)
            worker = worker_of(json.loads(await asyncio.wait_for(ws.recv(), 10)),
                               self.args.by_host)
        except Exception as exc:
            self.calls.failed += 1
            self.calls.errors[describe(exc)] += 1
            if up:
                up.set()
            return
        self.calls.per_worker[worker] += 1
        self.calls.live[worker] += 1
        if up:
            up.set()
        ends = time.monotonic() + length
        try:
            while time.monotonic() < ends:
                await asyncio.sleep(min(self.args.ping, max(0.0, ends - time.monotonic())))
                await ws.send("hello")
                if await asyncio.wait_for(ws.recv(), 10) != "hello":
                    raise RuntimeError("wrong echo")
            await ws.close()
            self.calls.completed += 1
        except Exception as exc:
            self.calls.closed_early += 1
            self.calls.errors[describe(exc)] += 1
        finally:
            self.calls.live[worker] -= 1

    async def call_arrivals(self, until: float, running: set[asyncio.Task[None]]) -> None:
        if self.args.call_rate <= 0:
            return
        while True:
            await asyncio.sleep(random.expovariate(self.args.call_rate))
            if time.monotonic() >= until:
                return
            task = asyncio.create_task(self.call())
            running.add(task)
            task.add_done_callback(running.discard)

    async def sample(self) -> None:
        while True:
            self.timeline.append({"t": round(time.monotonic() - self.start, 1),
                                  "live": dict(sorted(self.calls.live.items()))})
            await asyncio.sleep(1)

    # -- the run ---------------------------------------------------------------

    async def run(self) -> dict[str, object]:
        sampler = asyncio.create_task(self.sample())
        running: set[asyncio.Task[None]] = set()
        for _ in range(self.args.initial_calls):  # one after another, as callers arrive
            up = asyncio.Event()
            task = asyncio.create_task(self.call(up))
            running.add(task)
            task.add_done_callback(running.discard)
            await up.wait()
        print(json.dumps({"event": "warm", "calls": dict(self.calls.per_worker)}), flush=True)
        until = time.monotonic() + self.args.duration
        await asyncio.gather(self.http_load(until), self.call_arrivals(until, running))
        while running:
            await asyncio.gather(*list(running))
        sampler.cancel()
        return {
            "seconds": round(time.monotonic() - self.start, 1),
            "requests": _as_dict(self.requests),
            "calls": _as_dict(self.calls, skip=("live",)),
            "timeline": self.timeline,
        }


def is_loopback(host: str, within: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
                ) -> bool:
    """Whether every address ``host`` resolves to is a loopback one (or in ``within``, a
    private network of the test's own)."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
    return bool(addresses) and all(
        a.is_loopback or (within is not None and within.is_private and a in within)
        for a in addresses)


def worker_of(hello: dict[str, int | str], by_host: bool = False) -> str:
    """A worker's name: its port (with ``by_host``, host:port), or its pid where
    workers share a port."""
    if not hello.get("port"):
        return f"pid{hello['pid']}"
    return f"{hello['host']}:{hello['port']}" if by_host else str(hello["port"])


def describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}({code})" if code else f"{type(exc).__name__}: {exc}"[:120]


def _as_dict(record: object, skip: tuple[str, ...] = ()) -> dict[str, object]:
    return {k: dict(v) if isinstance(v, collections.Counter) else v
            for k, v in vars(record).items() if k not in skip}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://localhost",
                        help="nginx, on this machine [%(default)s]")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load")
    parser.add_argument("--rps", type=float, default=20, help="HTTP requests per second")
    parser.add_argument("--call-rate", type=float, default=1, help="new calls per second")
    parser.add_argument("--call-seconds", type=float, default=10, help="length of a call")
    parser.add_argument("--jitter", type=float, default=0.3, help="± fraction of a call's length")
    parser.add_argument("--initial-calls", type=int, default=0, help="calls opened first")
    parser.add_argument("--ping", type=float, default=1, help="seconds between messages")
    parser.add_argument("--cacert", help="CA file to trust for an https:// base")
    parser.add_argument("--path", default=WORKER_PATH,
                        help="what the HTTP requests ask for [%(default)s: the example "
                             "app's, which names the worker]")
    parser.add_argument("--keep-alive", action="store_true",
                        help="reuse each connection, as browsers and SDKs do")
    parser.add_argument("--within", type=ipaddress.ip_network,
                        help="a test's own private network the target may be on too "
                             "(a floating address on its bridge)")
    parser.add_argument("--by-host", action="store_true",
                        help="name workers host:port (the workers of several hosts)")
    args = parser.parse_args()
    if not is_loopback(urlsplit(args.base).hostname or "localhost", args.within):
        sys.exit("loadgen: only targets on this machine (loopback) or --within are allowed")
    print(json.dumps(asyncio.run(Load(args).run())), flush=True)


if __name__ == "__main__":
    main()
