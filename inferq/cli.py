"""The ``inferq`` command line: the embedded default (``dev``), one role each, model and store
administration. Configuration comes from the environment / ``INFERQ_CONFIG`` (see README)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from core.config import Settings
from core.logs import setup_logging
from schemas.states import Priority

log = logging.getLogger("inferq.cli")


async def _serve(role, metrics_port: int = 0) -> int:
    """Run one role until SIGTERM/SIGINT: the handlers only set an event; stop() does the rest."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if metrics_port:
        from prometheus_client import start_http_server
        start_http_server(metrics_port, addr=role.settings.http_host)
    await role.start()
    log.info("%s started", type(role).__name__)
    await stop.wait()
    log.info("%s stopping", type(role).__name__)
    await role.stop()
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "model", None):
        overrides["runner_model"] = args.model
    if getattr(args, "backend", None):
        overrides["backend"] = args.backend
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    return Settings.load(**overrides)


def _role_class(command: str) -> type:
    """Import only the role asked for: a gateway never loads an inference runtime."""
    if command == "gateway":
        from inferq.roles.gateway import GatewayRole
        return GatewayRole
    if command == "scheduler":
        from inferq.roles.scheduler import SchedulerRole
        return SchedulerRole
    from inferq.roles.runner import RunnerRole
    return RunnerRole


def cmd_role(args: argparse.Namespace) -> int:
    """``inferq gateway|scheduler|runner``: one role until a signal (faults from the env)."""
    from core import faults, loops
    faults.configure(os.environ.get("INFERQ_FAULTS"),
                     int(os.environ["INFERQ_FAULTS_SEED"]) if os.environ.get(
                         "INFERQ_FAULTS_SEED") else None,
                     os.environ.get("INFERQ_FAULTS_POISON_IDS"))
    settings = _settings(args)
    role = _role_class(args.command)(settings)
    metrics_port = 0 if args.command == "gateway" else settings.metrics_port
    return loops.run(_serve(role, metrics_port), settings.event_loop)


def cmd_models_build(args: argparse.Namespace) -> int:
    """``inferq models build minilm``: build the default model into the repository."""
    from models.build.build_minilm import build_minilm

    if args.name != "minilm":
        print("inferq: only the default model 'minilm' can be built; register others by "
              "copying model.onnx, tokenizer.json and config.json into the repository "
              "(see docs/models.md)", file=sys.stderr)
        return 2
    repo = Path(args.repo or Settings.load().model_repo).expanduser()
    path = build_minilm(repo, force=args.force)
    print(path)
    return 0


def cmd_store_migrate(args: argparse.Namespace) -> int:
    """``inferq store migrate``: create the result store's tables."""
    from store.results import open_result_store

    async def run() -> None:
        store = open_result_store(Settings.load().results_url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    print("result store migrated")
    return 0


def cmd_bus_provision(args: argparse.Namespace) -> int:
    """``inferq bus provision``: create or update the streams, as the NATS admin user
    (INFERQ_NATS_USER/PASSWORD): where each role has its own user, roles may not."""
    from core import bus

    try:
        asyncio.run(bus.provision(Settings.load()))
    except bus.BusError as exc:
        print(f"inferq bus provision: {exc}", file=sys.stderr)
        return 1
    print("streams provisioned")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """``inferq dev``: the whole service on this machine (see inferq/dev.py)."""
    from inferq.dev import run_dev

    if args.results == "cassandra":
        return _dev_on_cassandra(args)
    return run_dev(port=args.port, state_dir=Path(args.state_dir), api_key=args.api_key,
                   backend=args.backend)


def _dev_on_cassandra(args: argparse.Namespace) -> int:
    """``inferq dev --results cassandra``: INFERQ_RESULTS_URL's cluster when it names one,
    else a local node (inferq/cassandra_node.py); migrated, then the usual dev stack."""
    import importlib.util

    from inferq.cassandra_node import CassandraNodeMissing, dev_node, home_from
    from inferq.dev import run_dev
    from inferq.embedded import EmbeddedServerError
    from store.results import StoreError

    if importlib.util.find_spec("cassandra") is None:
        print("inferq dev: --results cassandra needs the driver: pip install -e '.[cassandra]'",
              file=sys.stderr)
        return 2
    url, node = os.environ.get("INFERQ_RESULTS_URL", ""), None
    try:
        if not url.startswith("cassandra://"):
            state = Path(args.state_dir).resolve()
            (state / "logs").mkdir(parents=True, exist_ok=True)
            java_home = os.environ.get("JAVA_HOME")
            print("inferq dev: starting a local Cassandra node (~20 s)...", flush=True)
            url, node = dev_node(state, home_from(os.environ),
                                 Path(java_home) if java_home else None)
        os.environ["INFERQ_RESULTS_URL"] = url  # what run_dev hands its roles
        cmd_store_migrate(args)
        return run_dev(port=args.port, state_dir=Path(args.state_dir), api_key=args.api_key,
                       backend=args.backend)
    except CassandraNodeMissing as exc:
        print(f"inferq dev: {exc}, or set INFERQ_RESULTS_URL=cassandra://host/keyspace",
              file=sys.stderr)
        return 2
    except EmbeddedServerError as exc:
        print(f"inferq dev: the Cassandra node did not start: {exc}", file=sys.stderr)
        return 1
    except (StoreError, ValueError) as exc:  # the cluster is unreachable, or its URL wrong
        print(f"inferq dev: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop(grace=30.0)


def cmd_submit(args: argparse.Namespace) -> int:
    """``inferq submit``: a JSONL file as one job; exit 2 on bad input, 3 on an API error."""
    from inferq.client import InferqError
    from inferq.submit_file import default_api_key, submit_file

    url = args.url or os.environ.get("INFERQ_URL") or "http://127.0.0.1:8000"
    key = args.api_key or os.environ.get("INFERQ_API_KEY") or default_api_key()
    if not key:
        print("inferq submit: no API key (--api-key, $INFERQ_API_KEY or .inferq/dev-api-key)",
              file=sys.stderr)
        return 2
    try:
        return asyncio.run(submit_file(
            url, key, args.file, model=args.model, priority=args.priority,
            timeout_s=args.timeout_s, wait=args.wait or bool(args.output), output=args.output,
            idempotency_key=args.idempotency_key, max_items=args.max_items_per_job))
    except (OSError, ValueError) as exc:
        print(f"inferq submit: {exc}", file=sys.stderr)
        return 2
    except InferqError as exc:
        print(f"inferq submit: {exc}", file=sys.stderr)
        return 3


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: one sub-command each, bound to its ``cmd_*`` function."""
    p = argparse.ArgumentParser(prog="inferq", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dev", help="run the whole service on this machine (embedded default)")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--state-dir", default=".inferq")
    d.add_argument("--api-key", default=None)
    d.add_argument("--backend", default=None, help="runner backend (default: auto)")
    d.add_argument("--results", choices=["sqlite", "cassandra"], default="sqlite",
                   help="result store: SQLite in the state dir, or Cassandra (a local node, "
                        "or INFERQ_RESULTS_URL=cassandra://...)")
    d.set_defaults(func=cmd_dev)

    for role in ("gateway", "scheduler", "runner"):
        r = sub.add_parser(role, help=f"run the {role} alone against configured NATS/Redis/store")
        if role == "runner":
            r.add_argument("--model", default=None, help="minilm or minilm@<version>")
            r.add_argument("--backend", default=None)
        if role == "gateway":
            r.add_argument("--port", type=int, default=None)
        r.set_defaults(func=cmd_role)

    m = sub.add_parser("models", help="model repository")
    msub = m.add_subparsers(dest="models_command", required=True)
    b = msub.add_parser("build", help="build a model into the repository")
    b.add_argument("name")
    b.add_argument("--repo", default=None)
    b.add_argument("--force", action="store_true")
    b.set_defaults(func=cmd_models_build)

    sb = sub.add_parser("submit", help="submit a JSONL file of inputs; optionally wait and "
                        "download the results")
    sb.add_argument("file", help="JSONL: one {\"text\": ..., \"id\": ...} object (or one "
                    "JSON string) per line; '-' reads stdin")
    sb.add_argument("--model", default="minilm", help="model alias or pinned name@version")
    sb.add_argument("--priority", choices=[p.value for p in Priority], default=None)
    sb.add_argument("--timeout-s", type=float, default=None, help="per-job deadline")
    sb.add_argument("--wait", action="store_true", help="wait until every job is terminal")
    sb.add_argument("-o", "--output", default=None,
                    help="write every item result here as JSONL (implies --wait)")
    sb.add_argument("--url", default=None,
                    help="gateway URL (default: $INFERQ_URL or http://127.0.0.1:8000)")
    sb.add_argument("--api-key", default=None,
                    help="API key (default: $INFERQ_API_KEY, else .inferq/dev-api-key)")
    sb.add_argument("--idempotency-key", default=None,
                    help="the job's Idempotency-Key (default: derived from the inputs, model "
                         "and options, so re-running the same command within 24 h returns "
                         "the same job)")
    sb.add_argument("--max-items-per-job", type=int, default=10_000,
                    help="most inputs sent inline; a longer file is uploaded (POST /v1/files) "
                         "and submitted as one job from the file")
    sb.set_defaults(func=cmd_submit)

    s = sub.add_parser("store", help="result store")
    ssub = s.add_subparsers(dest="store_command", required=True)
    sm = ssub.add_parser("migrate", help="create the result store's tables")
    sm.set_defaults(func=cmd_store_migrate)

    bs = sub.add_parser("bus", help="NATS JetStream")
    bsub = bs.add_subparsers(dest="bus_command", required=True)
    bp = bsub.add_parser("provision", help="create or update the streams (as the admin user)")
    bp.set_defaults(func=cmd_bus_provision)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, set up JSON logging, run the sub-command; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
