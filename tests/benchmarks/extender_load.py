"""Benchmark load generator, run as its own process.

`python -m tests.benchmarks.extender_load --port P --body FILE --path /scheduler/prioritize
--rate 100 --seconds 10` sends the same POST body with HTTP/1.1 keep-alive over a small pool
of raw asyncio connections. `--rate R` is open loop: request i is due at t0 + i/R and its
latency is measured from that due time (so queueing behind a slow answer counts; no
coordinated omission). `--method GET` (no body) serves the metrics API soak.
`--rate 0` is closed loop: each connection sends its next request as
soon as the previous answer arrives (sustained throughput). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> tuple[int, int]:
    writer.write(payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == b"content-length":
            length = int(value)
        elif key.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            total += size
            if size == 0:
                return status, total
    await reader.readexactly(length)
    return status, length


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = Path(args.body).read_bytes() if args.body else b""
    if args.method == "GET":
        payload = (
            f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Accept: application/json\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode()
    else:
        payload = (
            f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Content-Type: application/json\r\nAccept-Encoding: identity\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(args.connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", args.port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sizes: set[int] = set()

    async def one(due: float) -> None:
        conn = await pool.get()
        try:
            status, size = await _request(*conn, payload)
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1
        sizes.add(size)

    # warm-up
    for _ in range(5):
        await one(time.perf_counter())
    latencies.clear()
    statuses.clear()
    start = time.perf_counter()
    end = start + args.seconds
    if args.rate > 0:
        tasks = []
        i = 0
        while True:
            due = start + i / args.rate
            if due >= end:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
            i += 1
        await asyncio.gather(*tasks)
    else:

        async def worker() -> None:
            while time.perf_counter() < end:
                await one(time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(args.connections)))
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(pct(90), 3),
        "p99_ms": round(pct(99), 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "statuses": statuses,
        "response_bytes": sorted(sizes),
        "request_bytes": len(body),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", default="")
    parser.add_argument("--method", choices=["POST", "GET"], default="POST")
    parser.add_argument("--path", required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
