"""schemathesis against the running gateway: every check (stateful included, following the
document's links from ``POST /v1/jobs``), a fixed seed, and nothing found.

The service runs in the test's event loop on real nats-server and redis-server (the shared
fixtures), without scheduler or runner: jobs queue, which is all the API needs. schemathesis
runs as its command line in a worker thread, so its summary line lands in the test output.

Short by default (about two minutes on 2 cores). The long mode explores much further::

    INFERQ_SCHEMATHESIS=long .venv/bin/python -m pytest -q -s tests/gateway/test_schemathesis.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import KEYS
from tests.gateway.support import running, tenants_with

HERE = Path(__file__).resolve().parent
LONG = os.environ.get("INFERQ_SCHEMATHESIS") == "long"
SEED = int(os.environ.get("INFERQ_SCHEMATHESIS_SEED", "20240612"))


def command(url: str, report: Path) -> list[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    return [
        st, "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
        "run", f"{url}/schema/openapi.json", "--checks", "all", "--seed", str(SEED),
        "--workers", "1",
        "--max-examples", "300" if LONG else "25",
        "--max-time", "1800" if LONG else "100",
        "-H", f"Authorization: Bearer {KEYS['alpha']}",
        "--generation-database", "none", "--output-truncate", "true",
        "--report", "junit", "--report-junit-path", str(report),
    ]


async def test_schemathesis_finds_nothing(settings, tmp_path) -> None:
    unlimited = {"requests_per_s": 1e6, "polls_per_s": 1e6, "items_per_min": 1e12,
                 "backlog_quota": 10**12}
    # A webhook secret: a submit with a webhook (gateway/openapi.py) is then valid.
    unlimited["webhook_secret"] = "whsec_c2NoZW1hdGhlc2lzLXdlYmhvb2stc2VjcmV0"
    tenants = tenants_with(tmp_path / "st-tenants.toml", alpha=unlimited)
    log = tmp_path / "schemathesis.out"  # streamed, so a run that hangs shows where
    async with running(settings, tenants_file=tenants) as svc:
        with log.open("w") as out_file:
            try:
                proc = await asyncio.to_thread(
                    subprocess.run, command(svc.url, tmp_path / "junit.xml"), stdout=out_file,
                    stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                    timeout=2400 if LONG else 280)
            except subprocess.TimeoutExpired:
                raise AssertionError("schemathesis did not finish:\n"
                                     + log.read_text()[-6000:]) from None
    out = log.read_text()
    print(out[out.rfind("SUMMARY"):])  # pytest -s shows schemathesis' summary
    assert proc.returncode == 0, out[-12000:]
