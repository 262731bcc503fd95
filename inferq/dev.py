"""``inferq dev``: the whole service on one machine with no system installs.

Starts nats-server and redis-server (from their wheels) as children with their data under the
state directory, builds the default model if missing, writes a dev API key and a tenants file,
then runs gateway, scheduler and one runner as child processes. Ctrl-C or SIGTERM stops
everything in reverse order, each child with a grace period and then a hard kill.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.config import Settings
from core.tenants import Tenant, TenantDirectory, hash_key, write_tenants_file
from inferq.embedded import ServerProcess, free_port, nats_server, redis_server, terminate


def _dev_key(state: Path, given: str | None) -> str:
    path = state / "dev-api-key"
    if given:
        key = given
    elif path.exists():
        key = path.read_text().strip()
    else:
        key = "iq_dev_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _tenants_file(state: Path, key: str, base_file: str | None) -> Path:
    tenants: dict[str, Tenant] = {}
    if base_file:
        directory = TenantDirectory.load(base_file)
        tenants = {n: directory.get(n) for n in directory.weights()}  # type: ignore[misc]
    dev = tenants.get("dev") or Tenant(name="dev")
    hashes = sorted(set(dev.api_key_sha256) | {hash_key(key)})
    tenants["dev"] = Tenant(name="dev", weight=dev.weight, requests_per_s=dev.requests_per_s,
                            items_per_min=dev.items_per_min, polls_per_s=dev.polls_per_s,
                            backlog_quota=dev.backlog_quota, api_key_sha256=hashes)
    path = state / "tenants.toml"
    write_tenants_file(path, tenants)
    return path


def _banner(port: int, key: str, state: Path) -> str:
    url = f"http://127.0.0.1:{port}"
    return f"""
inferq is running at {url}  (state in {state}, logs in {state}/logs)
API key (also in {state}/dev-api-key): {key}

  curl -s -X POST {url}/v1/jobs \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "minilm", "inputs": [{{"text": "hello world", "id": "a"}}]}}'

  curl -s {url}/v1/jobs/<job_id> -H "Authorization: Bearer {key}"
  curl -s {url}/v1/jobs/<job_id>/results -H "Authorization: Bearer {key}"

OpenAPI: {url}/schema   Metrics: {url}/metrics   Stop: Ctrl-C
"""


class StopFlag:
    """Set by the signal handlers, polled by the main loop. Not a ``threading.Event``: its
    ``set()`` takes a lock, and a second signal arriving inside the first handler's ``set()``
    (Ctrl-C twice, or a supervisor forwarding the signal it got) deadlocked on it."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Ask to stop (safe to call from a signal handler, any number of times)."""
        self._set = True

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early (within 50 ms) once set; is it set?"""
        deadline = time.monotonic() + timeout
        while not self._set and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self._set


def run_dev(*, port: int, state_dir: Path, api_key: str | None, backend: str | None) -> int:
    """Run the embedded stack until SIGINT/SIGTERM (the handlers only set an event); returns
    the exit code, 1 when a child fails to start or exits."""
    state = state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    base = Settings.load()
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    print("inferq dev: preparing the default model (first run builds it, ~1 min)...", flush=True)
    from models.build import ensure_default_model

    ensure_default_model(Path(base.model_repo).expanduser())

    servers: list[ServerProcess] = []
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        nats = nats_server(state / "nats", log_path=state / "logs" / "nats.log",
                           sync_always=True).start()
        servers.append(nats)
        redis = redis_server(state / "redis", log_path=state / "logs" / "redis.log").start()
        servers.append(redis)
        key = _dev_key(state, api_key)
        env = dict(os.environ)
        env.update({
            "INFERQ_NATS_URL": f"nats://127.0.0.1:{nats.port}",
            "INFERQ_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "INFERQ_RESULTS_URL": env.get("INFERQ_RESULTS_URL")
            or f"sqlite:///{state / 'results.db'}",
            "INFERQ_MODEL_REPO": str(Path(base.model_repo).expanduser()),
            "INFERQ_TENANTS_FILE": str(_tenants_file(state, key, base.tenants_file)),
            "INFERQ_HTTP_PORT": str(port),
            "INFERQ_READY_REQUIRES_RUNNERS": "1",  # ready only once a runner serves the model
        })
        if backend:
            env["INFERQ_BACKEND"] = backend
            if backend.startswith("tensorrt") or backend == "simulated":
                env.setdefault("INFERQ_TOKENIZER_PARALLEL", "1")  # no CPU inference to stall
        for role in ("runner", "scheduler", "gateway"):
            role_env = dict(env)
            if role != "gateway":
                role_env.setdefault("INFERQ_METRICS_PORT", str(free_port()))
            log = open(state / "logs" / f"{role}.log", "ab")
            children.append((role, subprocess.Popen(
                [sys.executable, "-m", "inferq.cli", role], env=role_env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)))
            log.close()
        if not _wait_ready(port, children, stop):
            return 1
        print(_banner(port, key, state), flush=True)
        while not stop.wait(0.5):
            for role, proc in children:
                if proc.poll() is not None:
                    print(f"inferq dev: {role} exited with code {proc.returncode}; see "
                          f"{state}/logs/{role}.log", file=sys.stderr)
                    return 1
        print("inferq dev: stopping...", flush=True)
        return 0
    finally:
        for _, proc in reversed(children):
            terminate(proc, grace=30.0)
        for s in reversed(servers):
            s.stop()


def _wait_ready(port: int, children, stop: StopFlag, timeout: float = 180.0) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        for role, proc in children:
            if proc.poll() is not None:
                print(f"inferq dev: {role} failed to start (code {proc.returncode})",
                      file=sys.stderr)
                return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False
