"""Voice-shaped load: concurrent calls that each stream a 20 ms audio frame each way.

Runs on the machine under test (stdlib only; uvloop when the interpreter has
it), against loopback or the benchmark's private bridge only. Each call is a
WebSocket (``wss://`` when the base is ``https://``) to ``/api/v1/media`` that
sends one frame every 20 ms, as a telephony media stream does (Twilio's JSON
``media`` event with 160 bytes of μ-law in base64, or the same 160 bytes as
one binary frame), and the server answers frame for frame, as a voice bot's
transport does. Calls are spread over --processes processes and, within one,
over four 5 ms slots, so frames leave at random-looking phases rather than all
at once.

Measured for the frames *sent* in each window: the round trip from when the
frame was due (not when a busy client got round to sending it, so a slow
client is not hidden), frames late (echo after 60 ms) and lost (no echo
within 1 s, or its call dropped), per call the p50 and p99, and the client's
own scheduling lag. The CPU of every process on this machine is read over the
window too, grouped as nginx, workers, load and other.

Commands on stdin, one JSON object a line; figures on stdout, one a line:

    {"calls": 300}                 hold 300 calls, settle, measure a window
    {"calls": 280, "fresh": true}  hang every call up first (drops any backlog)
    {"quit": true}

Each command prints {"event": "window", ...} when its window starts (the
benchmark reads other machines' CPU then) and {"event": "step", ...} after.
The client's frames carry a zero masking key: RFC 6455 lets the client pick
any key and every server unmasks the same way, and the client saves the XOR.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import ipaddress
import json
import multiprocessing
import os
import random
import resource
import socket
import ssl
import statistics
import struct
import sys
import time
from array import array
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FRAME_SECONDS = 0.02
SLOTS = 4
LATE_MS = 60.0
LOST_MS = 1000.0
MEDIA_PATH = "/api/v1/media"
# Twilio's media event, numbers zero-padded so every frame has the same length.
TWILIO_MEDIA = ('{"event":"media","sequenceNumber":"%08d","media":{"track":"inbound",'
                '"chunk":"%08d","timestamp":"%010d","payload":"%s"},"streamSid":"%s"}')


# -- pure pieces (unit-tested) -------------------------------------------------------

def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked with a zero key (the payload stays as it is)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + b"\0\0\0\0" + payload


def server_frames(data: bytes | bytearray) -> tuple[list[tuple[int, bool, int, int]], int]:
    """The complete frames at the start of ``data``: (opcode, final, where the payload
    starts, its length) each, and how many bytes they took."""
    frames: list[tuple[int, bool, int, int]] = []
    at, end = 0, len(data)
    while end - at >= 2:
        first, second = data[at], data[at + 1]
        length, head = second & 0x7F, 2
        if length == 126:
            if end - at < 4:
                break
            length, head = int.from_bytes(data[at + 2:at + 4], "big"), 4
        elif length == 127:
            if end - at < 10:
                break
            length, head = int.from_bytes(data[at + 2:at + 10], "big"), 10
        if second & 0x80:  # a server must not mask; tolerated
            head += 4
        if end - at < head + length:
            break
        frames.append((first & 0x0F, bool(first & 0x80), at + head, length))
        at += head + length
    return frames, at


def percentile(ordered: list[float] | array, q: float) -> float | None:  # type: ignore[type-arg]
    """The q-th percentile (0..100) of sorted values, nearest rank; None if empty."""
    if not len(ordered):
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil, at least the first
    return float(ordered[int(min(rank, len(ordered))) - 1])


def parse_stat(text: str) -> tuple[str, int]:
    """(command name, user + system clock ticks) from one /proc/PID/stat line."""
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return name, int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15


def cpu_group(cmdline: str, cgroup: str) -> str:
    """Which part of the machine a process is, from its command line and its unit
    (the peers' worker processes are multiprocessing children, named by neither)."""
    if "voicegen" in cmdline:
        return "load"
    if cmdline.startswith("nginx") or "/nginx.service" in cgroup:
        return "nginx"
    if any(unit in cgroup for unit in ("/dograh-api@", "/bench-peer.service")):
        return "workers"
    return "other"


def cpu_split(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
              seconds: float, ticks_per_second: int = 100) -> dict[str, float]:
    """CPUs each group used between two snapshots of {pid: (group, ticks)}; a process
    that started in between counts from zero."""
    used: dict[str, float] = collections.defaultdict(float)
    for pid, (group, ticks) in after.items():
        start = before.get(pid, (group, 0))[1]
        used[group] += max(0, ticks - start) / ticks_per_second / seconds
    return {group: round(cpus, 3) for group, cpus in sorted(used.items())}


def processes() -> dict[int, tuple[str, int]]:
    """Every process on this machine: {pid: (group, clock ticks used so far)}."""
    seen = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            cgroup = (entry / "cgroup").read_text()
            _, ticks = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # gone meanwhile, or a kernel thread's odd line
        if cmdline:
            seen[int(entry.name)] = (cpu_group(cmdline, cgroup), ticks)
    return seen


# -- one call ----------------------------------------------------------------------

class Window:
    """The frames a report covers: those due between start and end."""

    def __init__(self) -> None:
        self.start = float("inf")
        self.end = float("inf")

    def covers(self, due: float) -> bool:
        return self.start <= due <= self.end


class Call(asyncio.Protocol):
    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handshaken = False
        self.buffer = bytearray()
        self.pending: collections.deque[float] = collections.deque()  # due times, awaiting echo
        self.sequence = 0
        self.leaving = False
        self.reset()

    def reset(self) -> None:
        self.rtts: list[float] = []
        self.late = 0
        self.lost = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            f"GET {MEDIA_PATH} HTTP/1.1\r\nHost: {self.gen.host_header}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.handshaken:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:self.buffer.find(b"\r\n")])
            del self.buffer[:end + 4]
            if b" 101 " not in status + b" ":
                self.fail(RuntimeError(status.decode(errors="replace")[:60]))
                return
            self.handshaken = True
            self.opened.set_result(None)
        frames, used = server_frames(self.buffer)
        for opcode, final, start, length in frames:
            if opcode in (0, 1, 2):
                if final:
                    self.echoed(now)
            elif opcode == 8:
                code = int.from_bytes(self.buffer[start:start + 2], "big") if length >= 2 else 0
                self.gone(f"closed by the server ({code})")
            elif opcode == 9 and self.transport:
                # A pong carries the ping's payload back, or the server closes the call.
                self.transport.write(client_frame(10, bytes(self.buffer[start:start + length])))
        del self.buffer[:used]

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone(type(exc).__name__ if exc else "connection closed")

    # the stream
    def echoed(self, now: float) -> None:
        if not self.pending:
            self.gen.unexpected += 1
            return
        due = self.pending.popleft()
        if not self.gen.window.covers(due):
            return
        rtt = (now - due) * 1000
        if rtt > LOST_MS:
            self.lost += 1
        else:
            self.rtts.append(rtt)
            if rtt > LATE_MS:
                self.late += 1

    def send(self, due: float) -> None:
        assert self.transport is not None
        if self.transport.is_closing():  # going: gone() counts what it owed
            return
        self.sequence += 1
        self.transport.write(self.gen.frame(self.sequence))
        self.pending.append(due)
        if self.gen.window.covers(due):
            self.gen.sent += 1

    def hang_up(self) -> None:
        self.leaving = True
        if self.transport and not self.transport.is_closing():
            self.transport.write(client_frame(8, struct.pack("!H", 1000)))
            self.transport.close()

    def fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
            self.opened.exception()  # open() reports it, or gave up on it already
        if self.transport:
            self.transport.close()

    def gone(self, why: str) -> None:
        if not self.opened.done():
            self.fail(ConnectionError(why))
            return
        if self.leaving:
            return
        self.leaving = True
        # Frames this window still owed an echo are lost with the call.
        self.lost += sum(1 for due in self.pending if self.gen.window.covers(due))
        self.pending.clear()
        self.gen.dropped[why] += 1
        self.gen.forget(self)
        if self.transport:
            self.transport.close()


# -- one process's share ------------------------------------------------------------

class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        parts = urlsplit(args.base)
        self.host = parts.hostname or "localhost"
        self.tls = client_tls() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc
        self.binary = args.kind == "binary"
        self.slots: list[list[Call]] = [[] for _ in range(SLOTS)]
        self.window = Window()
        self.handshakes = asyncio.Semaphore(args.concurrency)
        self.refused: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.done: list[Call] = []  # calls that dropped this window, for their figures
        self.sent = 0
        self.unexpected = 0
        self.lags: list[float] = []
        self.cipher: str | None = None  # what TLS the server chose: the same for every side?
        audio = bytes(random.getrandbits(8) for _ in range(160))  # 20 ms of 8 kHz μ-law
        self.binary_frame = client_frame(2, audio)
        self.payload = base64.b64encode(audio).decode()
        self.stream = "MZ" + os.urandom(16).hex()
        self.json_head = client_frame(1, self.json_payload(0))[:-len(self.json_payload(0))]

    def json_payload(self, sequence: int) -> bytes:
        return (TWILIO_MEDIA % (sequence, sequence, sequence * 20, self.payload,
                                self.stream)).encode()

    def frame(self, sequence: int) -> bytes:
        if self.binary:
            return self.binary_frame
        return self.json_head + self.json_payload(sequence)

    @property
    def calls(self) -> list[Call]:
        return [call for slot in self.slots for call in slot]

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        call = Call(self)
        async with self.handshakes:
            try:
                await asyncio.wait_for(loop.create_connection(
                    lambda: call, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None), 30)
                await asyncio.wait_for(asyncio.shield(call.opened), 30)
            except Exception as exc:  # every failure counts, whatever its kind
                self.refused[describe(exc)] += 1
                call.leaving = True
                if call.transport:
                    call.transport.close()
                return
        if self.tls and not self.cipher and call.transport:
            name, version, _ = call.transport.get_extra_info("cipher")
            self.cipher = f"{version} {name}"
        min(self.slots, key=len).append(call)

    def forget(self, call: Call) -> None:
        for slot in self.slots:
            if call in slot:
                slot.remove(call)
                self.done.append(call)

    async def hold(self, count: int, fresh: bool) -> int:
        if fresh:
            self.hang_up(len(self.calls))
            await asyncio.sleep(1)  # let the servers see the hang-ups
        held = len(self.calls)
        if count > held:
            await asyncio.gather(*(self.open() for _ in range(count - held)))
        else:
            self.hang_up(held - count)
        return len(self.calls)

    def hang_up(self, count: int) -> None:
        for _ in range(count):
            slot = max(self.slots, key=len)
            slot.pop().hang_up()

    async def tick(self) -> None:
        """Every 5 ms one slot's calls each send a frame; a late tick still sends
        every frame it owes, stamped with when it was due."""
        period = FRAME_SECONDS / SLOTS
        due = time.monotonic()
        turn = 0
        while True:
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lags.append(max(0.0, time.monotonic() - due) * 1000)
            for call in list(self.slots[turn % SLOTS]):
                call.send(due)
            turn += 1

    def start_window(self) -> None:
        for call in self.calls:
            call.reset()
        self.done = []
        self.sent = 0
        self.lags = []
        self.window.start = time.monotonic()
        self.window.end = float("inf")

    def report(self) -> dict[str, Any]:
        """The window's figures; frames still owed an echo now (1 s after the
        window's end) are lost."""
        calls = self.calls + self.done
        rtts = array("f")
        per_call_p50, per_call_p99, hurt = [], [], 0
        late = lost = 0
        for call in calls:
            call.lost += sum(1 for due in call.pending if self.window.covers(due))
            ordered = sorted(call.rtts)
            rtts.extend(ordered)
            late += call.late
            lost += call.lost
            if ordered:
                per_call_p50.append(percentile(ordered, 50))
                per_call_p99.append(percentile(ordered, 99))
            if call.lost or (ordered and percentile(ordered, 99) > LATE_MS):  # type: ignore[operator]
                hurt += 1
        lags = sorted(self.lags)
        return {"held": len(self.calls), "sent": self.sent, "late": late, "lost": lost,
                "rtts": rtts.tobytes(), "call_p50": per_call_p50, "call_p99": per_call_p99,
                "hurt": hurt, "dropped": dict(self.dropped), "refused": dict(self.refused),
                "unexpected": self.unexpected, "client_lag_p99_ms": percentile(lags, 99),
                "cipher": self.cipher}


def client_tls() -> ssl.SSLContext:
    """TLS as a browser or Twilio speaks it (1.2 or 1.3, HTTP/1.1 for the upgrade), without
    checking the benchmark's self-signed certificate: what the servers pay is the same."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:80]


def child(args: argparse.Namespace, pipe: Connection) -> None:
    """One process: hold its share of the calls as told, stream, and report windows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run() -> None:
        gen = Generator(args)
        ticker = asyncio.get_running_loop().create_task(gen.tick())
        loop = asyncio.get_running_loop()
        while True:
            command, value = await loop.run_in_executor(None, pipe.recv)
            if command == "hold":
                count, fresh = value
                gen.refused.clear()  # both since the last step: settling counts too
                gen.dropped.clear()
                pipe.send(await gen.hold(count, fresh))
            elif command == "start":
                gen.start_window()
            elif command == "stop":
                gen.window.end = time.monotonic()
                await asyncio.sleep(LOST_MS / 1000)
                pipe.send(gen.report())
            else:
                gen.hang_up(len(gen.calls))
                await asyncio.sleep(0.5)
                ticker.cancel()
                return

    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One machine's figures from its processes' reports."""
    rtts = array("f")
    for report in reports:
        part = array("f")
        part.frombytes(report["rtts"])
        rtts.extend(part)
    ordered = sorted(rtts)
    per_call_p99 = sorted(p for r in reports for p in r["call_p99"])
    per_call_p50 = sorted(p for r in reports for p in r["call_p50"])
    total: dict[str, Any] = {key: sum(r[key] for r in reports)
                             for key in ("held", "sent", "late", "lost", "hurt", "unexpected")}
    for key in ("dropped", "refused"):
        counter: collections.Counter[str] = collections.Counter()
        for report in reports:
            counter.update(report[key])
        total[key] = dict(counter)
    lags = [r["client_lag_p99_ms"] for r in reports if r["client_lag_p99_ms"] is not None]
    return {**total, "echoed": len(ordered),
            "cipher": next((r["cipher"] for r in reports if r["cipher"]), None),
            "rtt_p50_ms": rounded(percentile(ordered, 50)),
            "rtt_p99_ms": rounded(percentile(ordered, 99)),
            "rtt_max_ms": rounded(ordered[-1] if ordered else None),
            "call_p50_median_ms": rounded(statistics.median(per_call_p50) if per_call_p50
                                          else None),
            "call_p99_median_ms": rounded(statistics.median(per_call_p99) if per_call_p99
                                          else None),
            "call_p99_worst_ms": rounded(per_call_p99[-1] if per_call_p99 else None),
            "client_lag_p99_ms": rounded(max(lags) if lags else None)}


def rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def allowed(host: str) -> bool:
    """Loopback, or a private address (the benchmark's own bridge): never the internet."""
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    return address.is_loopback or address.is_private


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://localhost", help="the server to call")
    parser.add_argument("--kind", choices=("json", "binary"), default="json",
                        help="Twilio-style media JSON, or raw μ-law binary frames")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50,
                        help="handshakes in flight per process")
    parser.add_argument("--settle", type=float, default=5, help="seconds before a window")
    parser.add_argument("--window", type=float, default=10, help="seconds measured")
    args = parser.parse_args()
    if not allowed(urlsplit(args.base).hostname or "localhost"):
        sys.exit("voicegen: only targets on this machine or a private network are allowed")
    pipes, children = [], []
    for _ in range(args.processes):
        parent, child_end = multiprocessing.Pipe()
        process = multiprocessing.Process(target=child, args=(args, child_end))
        process.start()
        pipes.append(parent)
        children.append(process)
    ticks = os.sysconf("SC_CLK_TCK")
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        count = int(command["calls"])
        for i, pipe in enumerate(pipes):
            pipe.send(("hold", (count // args.processes + (i < count % args.processes),
                                bool(command.get("fresh")))))
        held = sum(pipe.recv() for pipe in pipes)
        time.sleep(float(command.get("settle", args.settle)))
        before, started = processes(), time.monotonic()
        for pipe in pipes:
            pipe.send(("start", None))
        print(json.dumps({"event": "window", "calls": count, "held": held}), flush=True)
        time.sleep(float(command.get("window", args.window)))
        for pipe in pipes:
            pipe.send(("stop", None))
        after, seconds = processes(), time.monotonic() - started
        figures = merge([pipe.recv() for pipe in pipes])
        print(json.dumps({"event": "step", "calls": count, "window_s": round(seconds, 2),
                          **figures, "cpu": cpu_split(before, after, seconds, ticks)}),
              flush=True)
    for pipe in pipes:
        pipe.send(("quit", None))
    for process in children:
        process.join(10)


if __name__ == "__main__":
    main()
