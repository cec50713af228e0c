"""Load generator for the metrics API benchmark; runs as its own process.

`python -m tests.benchmarks.loadgen URL_PATH --host H --port P --connections N --seconds S
[--tls-ca CA --tls-cert CERT] [--header K:V ...]` sends GETs over N keep-alive connections
(one thread each) for S seconds after a short warm-up and prints one JSON line:
{"requests", "errors", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms"}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import threading
import time


def _connect(args: argparse.Namespace) -> http.client.HTTPConnection:
    if args.tls_ca:
        context = ssl.create_default_context(cafile=args.tls_ca)
        if args.tls_cert:
            context.load_cert_chain(args.tls_cert)
        return http.client.HTTPSConnection(args.host, args.port, context=context, timeout=10)
    return http.client.HTTPConnection(args.host, args.port, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=0.5)
    parser.add_argument("--tls-ca")
    parser.add_argument("--tls-cert")
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    latencies: list[list[float]] = [[] for _ in range(args.connections)]
    errors = [0] * args.connections
    start_barrier = threading.Barrier(args.connections + 1)
    measure_from = [0.0]
    stop_at = [0.0]

    def worker(i: int) -> None:
        conn = _connect(args)
        start_barrier.wait()
        mine = latencies[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                break
            try:
                conn.request("GET", args.path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = _connect(args)
            t1 = time.perf_counter()
            if t0 >= measure_from[0]:
                if ok:
                    mine.append(t1 - t0)
                else:
                    errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    measure_from[0] = now + args.warmup_seconds
    stop_at[0] = measure_from[0] + args.seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    samples = sorted(x for per in latencies for x in per)
    n = len(samples)

    def pct(q: float) -> float:
        return samples[min(n - 1, int(q * n))] * 1000 if n else float("nan")

    print(
        json.dumps(
            {
                "requests": n,
                "errors": sum(errors),
                "seconds": args.seconds,
                "rps": n / args.seconds,
                "p50_ms": pct(0.50),
                "p90_ms": pct(0.90),
                "p99_ms": pct(0.99),
                "max_ms": samples[-1] * 1000 if n else float("nan"),
                "mean_ms": statistics.fmean(samples) * 1000 if n else float("nan"),
            }
        )
    )


if __name__ == "__main__":
    main()
