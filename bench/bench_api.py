"""Benchmark the gateway's API costs from one gateway process (no runner: jobs just queue).

    python bench/bench_api.py [--quick] [--connections 32] [--seconds 3] [--compare]

1. Status polls per second answered 200 (an unconditional GET) versus 304 (``If-None-Match``
   with the current ETag), the two taking turns round by round.
2. Submit latency (p50, p99) with an Idempotency-Key on every request versus none, taking
   turns the same way; each keyed request uses a fresh key (a new job: the cost of the claim,
   not of a replay).

The gateway runs as ``inferq gateway`` in a child process on real nats-server and
redis-server children and a SQLite file (synchronous=FULL) in a temporary directory. Polls
are offered by ``wrk`` (a separate process, ``apt-get install wrk``) where it is installed,
else from this process through a minimal keep-alive HTTP/1.1 client on asyncio streams.

``--compare`` starts two more gateways on the same servers: one configured as before the
accelerator-speed work (asyncio's loop, the h11 parser, no poll leases: every poll a Redis
rate-limit call, polls through Litestar's router and redis-py's pool) and one as now but with
polls routed by Litestar and read through redis-py ("routed": the fast path and pipelined
reads off), and alternates rounds between the three, so the ratios are measured side by side
in one run. ``--otel`` does the same with a gateway exporting every request's span over
OTLP/HTTP (``INFERQ_OTLP_ENDPOINT``, sampling 1.0) to a collector in this process that
accepts and discards them, against one with export off (the default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def wrk_round(port: int, path: str, headers: dict[str, str], want: int, connections: int,
              seconds: float) -> float:
    """Requests per second answered ``want`` under ``wrk`` (one thread per core, its own
    process); any other answer fails the round."""
    script = ("done = function(summary, latency, requests)\n"
              "  io.write(string.format('RESULT %d %d %d\\n', summary.requests, "
              "summary.errors.status, summary.duration))\nend\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", f.name]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True,
                         text=True, check=True).stdout
    os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    requests, bad, duration_us = map(int, line.split()[1:])
    if bad:
        raise RuntimeError(f"{bad} of {requests} answers were not {want} (non-2xx/3xx)")
    return requests / (duration_us / 1e6)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def polls(args: argparse.Namespace, host: str, port: int, pid: int, path: str,
                headers: dict[str, str], want: int) -> tuple[float, float]:
    """(requests/s, the gateway's CPU-µs per request) of one round."""
    c0, t0 = cpu_s(pid), time.perf_counter()
    if args.wrk:
        rate = await asyncio.to_thread(wrk_round, port, path, headers, want,
                                       args.connections, args.seconds)
    else:
        rate = await poll_round(host, port, path, headers, want, args.connections,
                                args.seconds)
    requests = rate * (time.perf_counter() - t0)
    return rate, (cpu_s(pid) - c0) / requests * 1e6


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


async def first_job(host: str, port: int) -> tuple[str, str]:
    c = await Conn.open(host, port)
    body = json.dumps({"model": "minilm", "input": {"text": "poll me"}}).encode()
    status, hdrs, data = await c.request("POST", "/v1/jobs", {
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}, body)
    assert status == 202, data
    c.close()
    return f"/v1/jobs/{json.loads(data)['job_id']}", hdrs["etag"]


async def run(args: argparse.Namespace, gateways: dict[str, tuple[int, int]]) -> None:
    """``gateways``: name -> (port, pid)."""
    host = "127.0.0.1"
    auth = {"Authorization": f"Bearer {KEY}"}
    names = list(gateways)
    path, etag = await first_job(host, gateways[names[0]][0])
    for port, _ in gateways.values():  # warm up
        await poll_round(host, port, path, auth, 200, args.connections, 1.0)
    rates: dict[tuple[str, str], list[float]] = {(n, k): [] for n in names
                                                 for k in ("200", "304")}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in rates}
    for _ in range(args.rounds):
        for name in names:
            port, pid = gateways[name]
            for code, hdrs in (("200", auth), ("304", {**auth, "If-None-Match": etag})):
                rate, us = await polls(args, host, port, pid, path, hdrs, int(code))
                rates[name, code].append(rate)
                cpu[name, code].append(us)
    by = "wrk (a separate process)" if args.wrk else "this process"
    print(f"status polls, one gateway process each, {args.connections} connections from "
          f"{by}, {args.rounds} rounds x {args.seconds:g} s each, alternating (median):")
    med = {k: statistics.median(v) for k, v in rates.items()}
    us = {k: statistics.median(v) for k, v in cpu.items()}
    for name in names:
        for code in ("200", "304"):
            print(f"  {name:7s} {code}  {med[name, code]:8.0f} req/s   "
                  f"{us[name, code]:5.0f} gateway CPU-us/poll   rounds: "
                  + ", ".join(f"{r:.0f}" for r in rates[name, code]))
    if len(names) >= 2:
        a = names[0]
        for b in names[1:]:
            for code in ("200", "304"):
                print(f"  {b} / {a} ({code})  {med[b, code] / med[a, code]:6.2f}x req/s, "
                      f"{us[a, code] / us[b, code]:.2f}x less CPU per poll")
    else:
        print(f"  304 / 200         {med[names[0], '304'] / med[names[0], '200']:8.2f}x")

    for port, _ in gateways.values():  # warm up
        await submit_round(host, port, True, 20, args.concurrency, args.items)
    lat: dict[tuple[str, bool], list[float]] = {(n, k): [] for n in names for k in (False, True)}
    for _ in range(args.rounds):
        for name in names:
            for keyed in (False, True):
                lat[name, keyed] += await submit_round(host, gateways[name][0], keyed,
                                                       args.submits, args.concurrency,
                                                       args.items)
    print(f"\nsubmit latency, {args.items} items per job, {args.concurrency} in flight, "
          f"{args.rounds} x {args.submits} submits per mode:")
    for name in names:
        for keyed, mode in ((False, "keys off"), (True, "keys on ")):
            xs = lat[name, keyed]
            print(f"  {name:7s} {mode}  p50 {pct(xs, 50) * 1000:6.1f} ms   p99 "
                  f"{pct(xs, 99) * 1000:6.1f} ms   mean {statistics.fmean(xs) * 1000:6.1f} ms"
                  f"   (n={len(xs)})")
        on, off = lat[name, True], lat[name, False]
        print(f"  {name:7s} p99 on / off   {pct(on, 99) / pct(off, 99):.2f}x   "
              f"p50 on / off   {pct(on, 50) / pct(off, 50):.2f}x")


def null_collector() -> ThreadingHTTPServer:
    """An OTLP/HTTP collector on a free port that answers 200 to every POST and keeps
    nothing (``--otel``): the gateway pays for its spans, not for a slow collector."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


ROUTED = {"INFERQ_FAST_STATUS_POLLS": "false", "INFERQ_REDIS_PIPELINED_READS": "false"}
"""Polls through Litestar's router and redis-py's pool (gateway/polls.py and
store/redis_pipe.py off), for ``--compare``'s middle gateway."""
BEFORE = {"INFERQ_EVENT_LOOP": "asyncio", "INFERQ_HTTP_PARSER": "h11",
          "INFERQ_POLL_LEASE_S": "0", **ROUTED}
"""The gateway as it was before the accelerator-speed work, for ``--compare``."""


def start_gateway(t: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = t / f"gateway-{name}.log"
    gw = subprocess.Popen([sys.executable, "-m", "inferq.cli", "gateway"],
                          env={**env, "INFERQ_HTTP_PORT": str(port)},
                          stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return gw, port
        except OSError:
            if gw.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-2000:]) from None
            time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--submits", type=int, default=200, help="submits per mode per round")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--compare", action="store_true",
                    help="also a gateway as before (asyncio, h11, no poll leases), side by side")
    ap.add_argument("--otel", action="store_true",
                    help="also a gateway exporting spans over OTLP/HTTP, side by side")
    ap.add_argument("--no-wrk", dest="wrk", action="store_false",
                    help="offer polls from this process even where wrk is installed")
    args = ap.parse_args()
    args.wrk = args.wrk and shutil.which("wrk") is not None
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
        env = {**os.environ, "INFERQ_NATS_URL": f"nats://127.0.0.1:{nats.port}",
               "INFERQ_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
               "INFERQ_RESULTS_URL": f"sqlite:///{t / 'results.db'}",
               "INFERQ_MODEL_REPO": str(repo), "INFERQ_TENANTS_FILE": str(tenants),
               "INFERQ_MODEL_BACKLOG_LIMIT": str(10**12)}
        variants = {"before": {**env, **BEFORE}, "routed": {**env, **ROUTED}, "now": env} \
            if args.compare else {"now": env}
        if args.otel:
            collector = null_collector()
            variants = {"off": env, "otel": {**env, "INFERQ_OTLP_ENDPOINT":
                                             f"http://127.0.0.1:{collector.server_port}"}}
        procs: list[subprocess.Popen] = []
        try:
            gateways = {}
            for name, variant_env in variants.items():
                gw, port = start_gateway(t, name, variant_env)
                gateways[name] = (port, gw.pid)
                procs.append(gw)
            print(f"cpu: {os.cpu_count()} cores; gateway pids "
                  + ", ".join(f"{n} {p.pid}" for n, p in zip(variants, procs, strict=True))
                  + "\n")
            asyncio.run(run(args, gateways))
        finally:
            for gw in procs:
                gw.terminate()
                gw.wait(30)
            redis.stop()
            nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
