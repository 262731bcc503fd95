"""`inferq dev` leaves nothing behind, however it dies: SIGKILL it and every child it started
(nats-server, redis-server, gateway, scheduler, runner) is gone within seconds, checked by
pid. While it runs, a second instance on its state directory, or on its port, is refused with
one line and no traceback."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from inferq.embedded import free_port
from tests.e2e.test_dev_command import read_banner

INFERQ = shutil.which("inferq", path=str(Path(sys.executable).parent)) or "inferq"


def children(pid: int) -> set[int]:
    """The pids of a process's direct children (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by init counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def dev(port: int, state: Path, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    return subprocess.Popen([INFERQ, "dev", "--port", str(port), "--state-dir", str(state),
                             "--backend", "simulated"], env=env, text=True, **kw)


def refused(port: int, state: Path) -> str:
    proc = dev(port, state, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_sigkilled_dev_leaves_no_child_and_a_second_instance_is_refused(tmp_path) -> None:
    port, state = free_port(), tmp_path / "state"
    proc = dev(port, state, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        read_banner(proc)
        kids = children(proc.pid)
        names = sorted(Path(f"/proc/{k}/cmdline").read_text().replace("\0", " ") for k in kids)
        assert len(kids) == 5, names  # nats-server, redis-server, runner, scheduler, gateway

        assert "another inferq dev" in refused(free_port(), state)
        assert f"port {port}" in refused(port, tmp_path / "other")
    finally:
        proc.send_signal(signal.SIGKILL)  # no handler runs, no finally: only the kernel acts
        proc.wait(10)
    deadline = time.monotonic() + 45  # the roles stop gracefully on their SIGTERM
    while time.monotonic() < deadline and any(alive(k) for k in kids):
        time.sleep(0.2)
    survivors = [k for k in kids if alive(k)]
    for k in survivors:  # do not leak them into the rest of the run
        os.kill(k, signal.SIGKILL)
    assert not survivors, f"survived inferq dev: {survivors} of {names}"
    # The lock died with its holder: the state directory is free again.
    fd = os.open(state / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
