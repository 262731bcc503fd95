"""The README's run command as a new user runs it: `inferq dev`, then its printed curl example."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from inferq.embedded import free_port


def read_banner(proc: subprocess.Popen, within: float = 240.0) -> str:
    out = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"inferq dev exited early:\n{''.join(out)}")
            continue
        out.append(line)
        if line.startswith("OpenAPI:"):
            return "".join(out)
    raise AssertionError("no banner:\n" + "".join(out))


def test_inferq_dev_serves_the_printed_curl_example_and_stops_cleanly(tmp_path: Path) -> None:
    inferq = shutil.which("inferq", path=str(Path(sys.executable).parent)) or "inferq"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    proc = subprocess.Popen([inferq, "dev", "--port", str(port), "--state-dir",
                             str(tmp_path / "state")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        banner = read_banner(proc)
        key = (tmp_path / "state" / "dev-api-key").read_text().strip()
        assert key in banner
        m = re.search(r"(curl -s -X POST .*?)\n\n", banner, re.S)
        assert m, banner
        r = subprocess.run(["bash", "-c", m.group(1)], capture_output=True, text=True,
                           timeout=30, check=True)
        doc = json.loads(r.stdout)
        assert doc["status"] in ("queued", "running", "succeeded") and doc["counts"]["total"] == 1
        status_cmd = re.search(r"(curl -s \S+/v1/jobs/<job_id> .*)\n", banner).group(1)
        status_cmd = status_cmd.replace("<job_id>", doc["job_id"])
        for _ in range(100):
            st = json.loads(subprocess.run(["bash", "-c", status_cmd], capture_output=True,
                                           text=True, timeout=30, check=True).stdout)
            if st["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert st["status"] == "succeeded" and st["counts"]["succeeded"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, rest
    # No child left behind: nothing listens on the gateway port any more.
    import socket

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
