"""Benchmark the submit path's body handling, and print what hostile bodies are answered.

    .venv/bin/python bench/bench_submit_body.py [--quick] [--label before|after]

1. Submit latency (p50, p99) of well-formed jobs of 1, 10 and 1,000 items, four in flight:
   what decoding the body costs on the path every tenant takes.
2. Hostile bodies — deep nesting, huge numbers, duplicate keys, invalid UTF-8, NaN/Infinity,
   wrong types at several depths, a non-JSON media type — each sent once: status, code,
   the first error pointer and the answer's latency, as a Markdown table.

One ``inferq gateway`` child process on real nats-server and redis-server children and a
SQLite file, no runner (jobs just queue), a tenant whose limits never bind; the load comes
from this process through bench_api's minimal keep-alive HTTP/1.1 client.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import KEY, UNLIMITED, Conn, pct

from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.embedded import free_port, nats_server, redis_server
from models.build import ensure_default_model

JSON_CT = "application/json"
ITEM = '{"text": "x"}'


def hostile() -> list[tuple[str, bytes, str]]:
    """(what, body, content type) of each hostile submission."""
    ok = '"model": "minilm", "input": {"text": "x"}'
    deep = 5000
    return [
        ("metadata nested 5,000 arrays deep",
         f'{{{ok}, "metadata": {{"a": {"[" * deep}{"]" * deep}}}}}'.encode(), JSON_CT),
        ("metadata nested 100,000 objects deep",
         ("{" + ok + ', "metadata": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}").encode(),
         JSON_CT),
        ("metadata nested 40 deep (over the 32 limit)",
         f'{{{ok}, "metadata": {{"a": {"[" * 40}{"]" * 40}}}}}'.encode(), JSON_CT),
        ("inputs nested 5,000 arrays deep",
         ('{"model": "minilm", "inputs": ' + "[" * deep + "]" * deep + "}").encode(), JSON_CT),
        ("unknown member nested 5,000 deep",
         f'{{{ok}, "x": {"[" * deep}{"]" * deep}}}'.encode(), JSON_CT),
        ("top level nested 5,000 arrays deep", ("[" * deep + "]" * deep).encode(), JSON_CT),
        ("timeout_s 1e999", f'{{{ok}, "timeout_s": 1e999}}'.encode(), JSON_CT),
        ("timeout_s 0", f'{{{ok}, "timeout_s": 0}}'.encode(), JSON_CT),
        ("metadata integer of 5,000 digits",
         f'{{{ok}, "metadata": {{"n": {"9" * 5000}}}}}'.encode(), JSON_CT),
        ("metadata integer 2**64", f'{{{ok}, "metadata": {{"n": {2**64}}}}}'.encode(), JSON_CT),
        ("metadata float 1e999", f'{{{ok}, "metadata": {{"n": 1e999}}}}'.encode(), JSON_CT),
        ("duplicate top-level key", b'{"model": "minilm", "model": "x", "input": {"text": "x"}}',
         JSON_CT),
        ("duplicate key in an item",
         b'{"model": "minilm", "inputs": [{"text": "a"}, {"text": "b", "text": "c"}]}', JSON_CT),
        ("duplicate key in metadata", f'{{{ok}, "metadata": {{"a": 1, "a": 2}}}}'.encode(),
         JSON_CT),
        ("invalid UTF-8 in a text", b'{"model": "minilm", "input": {"text": "\xff\xfe"}}',
         JSON_CT),
        ("NaN", f'{{{ok}, "timeout_s": NaN}}'.encode(), JSON_CT),
        ("Infinity in metadata", f'{{{ok}, "metadata": {{"x": Infinity}}}}'.encode(), JSON_CT),
        ("text is a number", b'{"model": "minilm", "inputs": [{"text": "a"}, {"text": 7}]}',
         JSON_CT),
        ("id is an object", b'{"model": "minilm", "input": {"text": "a", "id": {}}}', JSON_CT),
        ("inputs is a string", b'{"model": "minilm", "inputs": "abc"}', JSON_CT),
        ("body is an array", b"[1, 2]", JSON_CT),
        ("truncated JSON", b'{"model": "minilm", "input": {"text": "a"', JSON_CT),
        ("trailing garbage", f"{{{ok}}} x".encode(), JSON_CT),
        ("empty body", b"", JSON_CT),
        ("Content-Type text/plain", f"{{{ok}}}".encode(), "text/plain"),
        ("no Content-Type", f"{{{ok}}}".encode(), ""),
        ("Content-Type application/json; charset=latin-1", f"{{{ok}}}".encode(),
         "application/json; charset=latin-1"),
        ("well-formed (control)", f"{{{ok}}}".encode(), JSON_CT),
    ]


async def submit_round(host: str, port: int, items: int, n: int, concurrency: int) -> list[float]:
    body = json.dumps({"model": "minilm", "inputs": [
        {"text": f"benchmark sentence number {i}", "id": str(i)} for i in range(items)],
        "metadata": {"run": "bench", "tags": ["a", "b"]}}).encode()
    conns = [await Conn.open(host, port) for _ in range(concurrency)]
    latencies: list[float] = []
    left = n

    async def loop(c: Conn) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            status, _, data = await c.request("POST", "/v1/jobs", {
                "Authorization": f"Bearer {KEY}", "Content-Type": JSON_CT}, body)
            latencies.append(time.perf_counter() - t0)
            if status != 202:
                raise RuntimeError(f"submit: {status} {data[:200]!r}")

    await asyncio.gather(*(loop(c) for c in conns))
    for c in conns:
        c.close()
    return latencies


async def table(host: str, port: int) -> None:
    print("\n| input | status | code | pointer | ms |\n| --- | --- | --- | --- | --- |")
    for what, body, ctype in hostile():
        c = await Conn.open(host, port)
        headers = {"Authorization": f"Bearer {KEY}"}
        if ctype:
            headers["Content-Type"] = ctype
        t0 = time.perf_counter()
        status, _, data = await c.request("POST", "/v1/jobs", headers, body)
        ms = (time.perf_counter() - t0) * 1000
        c.close()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {}
        code = doc.get("code", "—")
        pointer = ((doc.get("errors") or [{}])[0]).get("pointer", "—")
        print(f"| {what} | {status} | `{code}` | `{pointer}` | {ms:.1f} |")


def decode_costs() -> None:
    """The body's decode alone, in this process: the old path (untyped decode, then
    convert), the typed decode, and ``decode_submit`` with every check (duplicates, metadata
    depth and numbers); skipped on a checkout without gateway/body.py."""
    import msgspec

    from core.config import Settings
    from schemas.api import SubmitRequest
    try:
        from gateway.body import decode_submit
    except ImportError:
        return
    settings, typed = Settings(), msgspec.json.Decoder(SubmitRequest)
    print("body decode alone (ms per body):")
    for n in (1, 10, 1000, 10_000):
        b = json.dumps({"model": "minilm", "inputs": [
            {"text": f"benchmark sentence number {i}", "id": str(i)} for i in range(n)],
            "metadata": {"run": "bench", "tags": ["a", "b"]}}).encode()
        reps, row = max(20, 20_000 // n), []
        for f in (lambda b: msgspec.convert(msgspec.json.decode(b), SubmitRequest),
                  typed.decode, lambda b: decode_submit(b, JSON_CT, settings)):
            t0 = time.perf_counter()
            for _ in range(reps):
                f(b)
            row.append((time.perf_counter() - t0) / reps * 1000)
        print(f"  {n:6d} items  untyped+convert {row[0]:7.3f}   typed {row[1]:7.3f}   "
              f"decode_submit {row[2]:7.3f}")
    print()


async def run(args: argparse.Namespace, port: int) -> None:
    host = "127.0.0.1"
    await submit_round(host, port, 10, 30, args.concurrency)  # warm up
    print(f"submit latency, {args.concurrency} in flight, {args.rounds} rounds "
          f"({args.label}):")
    for items, n in ((1, args.submits), (10, args.submits), (1000, max(20, args.submits // 10))):
        lat: list[float] = []
        for _ in range(args.rounds):
            lat += await submit_round(host, port, items, n, args.concurrency)
        print(f"  {items:5d} items  p50 {pct(lat, 50) * 1000:7.2f} ms   p99 "
              f"{pct(lat, 99) * 1000:7.2f} ms   mean {statistics.fmean(lat) * 1000:7.2f} ms"
              f"   (n={len(lat)})")
    await table(host, port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--submits", type=int, default=300, help="submits per size per round")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.submits = 1, 60
    repo = ensure_default_model().parent.parent
    with tempfile.TemporaryDirectory(prefix="inferq-bench-body-") as tmp:
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
            decode_costs()
            asyncio.run(run(args, port))
        finally:
            gw.terminate()
            gw.wait(30)
            redis.stop()
            nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
