"""Ask every server process of the capacity benchmark for its loop lag and memory.

    python3 lagsample.py --ports 8000,8001      # one process per port (our fleet)
    python3 lagsample.py --shared 9000 --processes 4   # workers sharing one port
    python3 lagsample.py --shared 9000 --processes 4 --tls   # that port speaks TLS

Workers that share a port are reached by asking until each has answered.
Prints JSON: {pid: {"p95_ms": ..., "rss_kb": ..., "websockets": ...}}.
"""

from __future__ import annotations

import argparse
import json
import ssl
import urllib.request


def ask(port: int, tls: bool) -> dict[str, int]:
    # The benchmark's self-signed certificate is not checked: only the figures matter.
    context = ssl._create_unverified_context() if tls else None
    with urllib.request.urlopen(f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/v1/lag",
                                timeout=10, context=context) as answer:
        return json.loads(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", help="comma-separated ports, one process each")
    parser.add_argument("--shared", type=int, help="one port that several processes share")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--tls", action="store_true", help="the shared port speaks TLS")
    args = parser.parse_args()
    seen: dict[int, dict[str, int]] = {}
    if args.ports:
        for port in map(int, args.ports.split(",")):
            answer = ask(port, False)
            seen[answer["pid"]] = answer
    else:
        for _ in range(args.processes * 30):
            answer = ask(args.shared, args.tls)
            seen[answer["pid"]] = answer
            if len(seen) == args.processes:
                break
    print(json.dumps({pid: {"p95_ms": a["p95_ms"], "rss_kb": a["rss_kb"],
                            "websockets": a.get("websockets")} for pid, a in seen.items()}))


if __name__ == "__main__":
    main()
