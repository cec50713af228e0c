"""A fault-injecting TCP/HTTP proxy on 127.0.0.1, for the reliability tests.

`FaultProxy(upstream_host, upstream_port)` listens on a free loopback port and, in mode
`PASS`, pipes bytes both ways to the upstream. Switch `proxy.fault` at any time (new
connections see it; open ones are closed on a switch so keep-alive clients reconnect):

- `LATENCY`: forwards, but holds every response back `latency_seconds`.
- `RESET`: accepts and resets the connection (RST, SO_LINGER 0) without answering.
- `HTTP_5XX`: answers every request `503 Service Unavailable` itself.
- `STORM_429`: answers every request `429 Too Many Requests` with `Retry-After`.
- `TRUNCATED`: answers `200` with a `Content-Length` longer than the body, then closes.
- `HANG`: accepts, reads the request, and never answers.

It runs its own asyncio loop on a daemon thread; `with FaultProxy(...) as p:` starts and
stops it. `connections` counts accepted connections (so a test can see a client retried).

`write_fault_table(name, rows)` writes a fault test module's outcome rows (markdown table
rows) to `tests/artifacts/<name>`, the source of the README's RELIABILITY tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["ARTIFACTS", "Fault", "FaultProxy", "write_fault_table"]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def write_fault_table(name: str, rows: Sequence[str]) -> None:
    """`rows` as `| fault | component | outcome |` lines; nothing when no test ran."""
    if not rows:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    head = "| fault | component | outcome |\n|---|---|---|\n"
    (ARTIFACTS / name).write_text(head + "".join(rows))


class Fault(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    RESET = "reset"
    HTTP_5XX = "5xx"
    STORM_429 = "429 storm"
    TRUNCATED = "truncated body"
    HANG = "hang"


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return await reader.readuntil(b"\r\n\r\n")
    return b""


class FaultProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency_seconds: float = 2.0,
        retry_after_seconds: int = 1,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency_seconds = latency_seconds
        self.retry_after_seconds = retry_after_seconds
        self._fault = Fault.PASS
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # ------------------------------------------------------------------ control
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fault(self) -> Fault:
        return self._fault

    @fault.setter
    def fault(self, value: Fault) -> None:
        self._fault = value
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(5)

    async def _drop_all(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    def start(self) -> FaultProxy:
        self._thread.start()

        async def _start() -> int:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            return int(self._server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def _stop() -> None:
            await self._drop_all()
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        fault = self._fault
        try:
            if fault is Fault.RESET:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if fault in (Fault.PASS, Fault.LATENCY):
                await self._pipe(reader, writer, delay=fault is Fault.LATENCY)
                return
            head = await _read_head(reader)
            if not head:
                return
            if fault is Fault.HANG:
                await asyncio.sleep(3600)
                return
            if fault is Fault.HTTP_5XX:
                body = b'{"error": "injected 503"}'
                extra = b""
                status = b"503 Service Unavailable"
            elif fault is Fault.STORM_429:
                body = b'{"error": "injected 429"}'
                extra = f"Retry-After: {self.retry_after_seconds}\r\n".encode()
                status = b"429 Too Many Requests"
            else:  # TRUNCATED
                body = b'{"data": [{"from": "2025-01-20T12:00Z", "intens'
                extra = b""
                status = b"200 OK"
            length = len(body) * (4 if fault is Fault.TRUNCATED else 1)
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(length).encode() + b"\r\n" + extra + b"\r\n" + body
            )
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: bool
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            return  # upstream down: the client sees a closed connection
        self._writers.add(up_writer)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: bool) -> None:
            try:
                while data := await src.read(65536):
                    if hold:
                        await asyncio.sleep(self.latency_seconds)
                        hold = False  # once per response start is enough for HTTP
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            copy(reader, up_writer, False), copy(up_reader, writer, delay), return_exceptions=True
        )
        self._writers.discard(up_writer)
