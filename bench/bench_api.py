"""Benchmark the gateway's API costs from one gateway process (no runner: jobs just queue).

    /work/venv/bin/python bench/bench_api.py [--quick] [--connections 32] [--seconds 3]

1. Status polls per second answered 200 (an unconditional GET) versus 304 (``If-None-Match``
   with the current ETag), the two taking turns round by round.
2. Submit latency (p50, p99) with an Idempotency-Key on every request versus none, taking
   turns the same way; each keyed request uses a fresh key (a new job: the cost of the claim,
   not of a replay).

The gateway runs as ``inferq gateway`` in a child process on real nats-server and
redis-server children and a SQLite file (synchronous=FULL) in a temporary directory. The
load comes from this process through a minimal keep-alive HTTP/1.1 client on asyncio
streams, lean enough that on a small machine the gateway, not the client, is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.embedded import free_port, nats_server, redis_server
from models.build import ensure_default_model

KEY = "bench-key-0123456789"
UNLIMITED = dict(requests_per_s=1e9, items_per_min=1e12, polls_per_s=1e9, backlog_quota=10**12)


class Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(*await asyncio.open_connection(host, port))

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.w.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for h in header_lines:
            if h:
                k, _, v = h.partition(":")
                hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        data = await self.r.readexactly(n) if n else b""
        return int(status_line.split()[1]), hdrs, data

    def close(self) -> None:
        self.w.close()


async def poll_round(host: str, port: int, path: str, headers: dict[str, str], want: int,
                     connections: int, seconds: float) -> float:
    """Requests per second answered ``want`` by ``connections`` closed-loop clients."""
    conns = [await Conn.open(host, port) for _ in range(connections)]
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(c: Conn) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            status, _, _ = await c.request("GET", path, headers)
            if status != want:
                raise RuntimeError(f"expected {want}, got {status}")
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return done / elapsed


async def submit_round(host: str, port: int, keyed: bool, n: int, concurrency: int,
                       items: int) -> list[float]:
    """Latencies (s) of ``n`` submits of ``items`` items each, ``concurrency`` at a time."""
    body = json.dumps({"model": "minilm", "inputs": [
        {"text": f"benchmark sentence number {i}", "id": str(i)} for i in range(items)]}).encode()
    conns = [await Conn.open(host, port) for _ in range(concurrency)]
    latencies: list[float] = []
    left = n

    async def loop(c: Conn) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            if keyed:
                h["Idempotency-Key"] = uuid.uuid4().hex
            t0 = time.perf_counter()
            status, _, data = await c.request("POST", "/v1/jobs", h, body)
            latencies.append(time.perf_counter() - t0)
            if status != 202:
                raise RuntimeError(f"submit: {status} {data[:200]!r}")

    await asyncio.gather(*(loop(c) for c in conns))
    for c in conns:
        c.close()
    return latencies


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def run(args: argparse.Namespace, port: int) -> None:
    host = "127.0.0.1"
    auth = {"Authorization": f"Bearer {KEY}"}
    c = await Conn.open(host, port)
    body = json.dumps({"model": "minilm", "input": {"text": "poll me"}}).encode()
    status, hdrs, data = await c.request("POST", "/v1/jobs", {**auth, "Content-Type":
                                                              "application/json"}, body)
    assert status == 202, data
    job = json.loads(data)["job_id"]
    etag = hdrs["etag"]
    c.close()
    path = f"/v1/jobs/{job}"
    await poll_round(host, port, path, auth, 200, args.connections, 1.0)  # warm up
    rates: dict[str, list[float]] = {"200": [], "304": []}
    for _ in range(args.rounds):
        rates["200"].append(await poll_round(host, port, path, auth, 200, args.connections,
                                             args.seconds))
        rates["304"].append(await poll_round(host, port, path, {**auth, "If-None-Match": etag},
                                             304, args.connections, args.seconds))
    ok, nm = statistics.median(rates["200"]), statistics.median(rates["304"])
    print(f"status polls, one gateway process, {args.connections} connections, "
          f"{args.rounds} rounds x {args.seconds:g} s each (median):")
    print(f"  200 OK            {ok:8.0f} req/s   rounds: "
          + ", ".join(f"{r:.0f}" for r in rates["200"]))
    print(f"  304 Not Modified  {nm:8.0f} req/s   rounds: "
          + ", ".join(f"{r:.0f}" for r in rates["304"]))
    print(f"  304 / 200         {nm / ok:8.2f}x")

    await submit_round(host, port, True, 20, args.concurrency, args.items)  # warm up
    lat: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for keyed in (False, True):
            lat[keyed] += await submit_round(host, port, keyed, args.submits, args.concurrency,
                                             args.items)
    print(f"\nsubmit latency, {args.items} items per job, {args.concurrency} in flight, "
          f"{args.rounds} x {args.submits} submits per mode:")
    for keyed, name in ((False, "keys off"), (True, "keys on ")):
        xs = lat[keyed]
        print(f"  {name}  p50 {pct(xs, 50) * 1000:6.1f} ms   p99 {pct(xs, 99) * 1000:6.1f} ms"
              f"   mean {statistics.fmean(xs) * 1000:6.1f} ms   (n={len(xs)})")
    print(f"  p99 on / off   {pct(lat[True], 99) / pct(lat[False], 99):.2f}x   "
          f"p50 on / off   {pct(lat[True], 50) / pct(lat[False], 50):.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--submits", type=int, default=200, help="submits per mode per round")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--items", type=int, default=10)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.submits = 1.0, 2, 50
    repo = ensure_default_model().parent.parent
    with tempfile.TemporaryDirectory(prefix="inferq-bench-api-") as tmp:
        t = Path(tmp)
        nats = nats_server(t / "nats", log_path=t / "nats.log").start()
        redis = redis_server(t / "redis", log_path=t / "redis.log", persist=False).start()
        tenants = t / "tenants.toml"
        write_tenants_file(tenants, {"bench": Tenant(name="bench", api_key_sha256=[hash_key(KEY)],
                                                     **UNLIMITED)})
        port = free_port()
        env = {**os.environ, "INFERQ_NATS_URL": f"nats://127.0.0.1:{nats.port}",
               "INFERQ_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
               "INFERQ_RESULTS_URL": f"sqlite:///{t / 'results.db'}",
               "INFERQ_MODEL_REPO": str(repo), "INFERQ_TENANTS_FILE": str(tenants),
               "INFERQ_HTTP_PORT": str(port), "INFERQ_MODEL_BACKLOG_LIMIT": str(10**12)}
        gw = subprocess.Popen([sys.executable, "-m", "inferq.cli", "gateway"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(t / "gateway.log", "wb"))
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if gw.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((t / "gateway.log").read_text()[-2000:]) from None
                    time.sleep(0.1)
            print(f"cpu: {os.cpu_count()} cores; gateway pid {gw.pid}\n")
            asyncio.run(run(args, port))
        finally:
            gw.terminate()
            gw.wait(30)
            redis.stop()
            nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
