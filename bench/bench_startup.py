"""The gateway's start-up cost: importing its role module and building the Litestar app, and
the process's memory after that, each run in a fresh interpreter.

Why: a gateway process should carry the HTTP stack and nothing it does not run (no inference
runtime), which shows as start-up time and resident memory. With ``--before`` the same probe
runs against another checkout (e.g. ``git worktree add /tmp/before <commit>``), the two
taking turns run by run so that drift in a shared machine's speed cancels; the ratios are
after / before.

    python bench/bench_startup.py                          # this tree, 15 runs
    python bench/bench_startup.py --before /tmp/before     # and an older checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnxruntime", "openvino", "tensorrt", "pycuda", "onnx", "safetensors",
            "gpu_runner")

# One run: import the role module, build the app (nothing connects until its lifespan runs),
# report the two times, the resident memory and which runtimes got loaded.
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import importlib
role = importlib.import_module(sys.argv[1])
settings = importlib.import_module(sys.argv[2]).Settings(tenants_file=None)
t1 = time.perf_counter()
from gateway.app import create_app
create_app(settings)
t2 = time.perf_counter()
rss = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmRSS:"))
runtimes = json.loads(sys.argv[3])
print(json.dumps({"import_s": t1 - t0, "app_s": t2 - t1, "rss_kib": rss,
                  "modules": len(sys.modules), "role_file": role.__file__,
                  "runtimes": sorted(r for r in runtimes if r in sys.modules)}))
"""


def layout(root: Path) -> tuple[str, str]:
    """The gateway role's module and the settings module of a checkout: one module per role
    under ``inferq/roles/`` with ``core.config`` now; ``inferq.roles`` and ``inferq.config``
    before the layers were split."""
    if (root / "inferq" / "roles" / "gateway.py").exists():
        return "inferq.roles.gateway", "core.config"
    return "inferq.roles", "inferq.config"


def run_once(root: Path) -> dict:
    """One fresh interpreter in ``root``; its figures plus the wall time including start."""
    role, settings = layout(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env["PYTHONPATH"] = str(root)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE, role, settings, json.dumps(RUNTIMES)],
                         cwd=root, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    doc = json.loads(out.stdout.splitlines()[-1])
    if not Path(doc["role_file"]).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"{root}: imported {doc['role_file']} from another tree")
    return {**doc, "wall_s": wall}


def summary(runs: list[dict]) -> dict:
    """Medians over the runs."""
    return {
        "import_ms": statistics.median(r["import_s"] for r in runs) * 1e3,
        "app_ms": statistics.median(r["app_s"] for r in runs) * 1e3,
        "startup_ms": statistics.median(r["import_s"] + r["app_s"] for r in runs) * 1e3,
        "wall_ms": statistics.median(r["wall_s"] for r in runs) * 1e3,
        "rss_mib": statistics.median(r["rss_kib"] for r in runs) / 1024,
        "modules": statistics.median(r["modules"] for r in runs),
        "runtimes": runs[-1]["runtimes"],
    }


def line(label: str, s: dict) -> str:
    return (f"{label:>7}: import {s['import_ms']:6.0f} ms + create_app {s['app_ms']:4.0f} ms = "
            f"{s['startup_ms']:6.0f} ms (process wall {s['wall_ms']:6.0f} ms); "
            f"RSS {s['rss_mib']:6.1f} MiB; {s['modules']:.0f} modules; "
            f"runtimes loaded: {', '.join(s['runtimes']) or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="fresh processes per tree")
    ap.add_argument("--before", type=Path, default=None, help="another checkout to compare")
    ap.add_argument("--after", type=Path, default=ROOT, help="this checkout (default)")
    args = ap.parse_args()
    trees = {"after": args.after}
    if args.before is not None:
        trees = {"before": args.before, **trees}
    for root in trees.values():  # warm-up: compile .pyc files, fill the page cache
        run_once(root)
    runs: dict[str, list[dict]] = {label: [] for label in trees}
    for _ in range(args.runs):  # taking turns, so that drift hits both alike
        for label, root in trees.items():
            runs[label].append(run_once(root))
    stats = {label: summary(r) for label, r in runs.items()}
    print(f"{sys.executable}, {args.runs} runs per tree, medians:")
    for label, s in stats.items():
        print(line(label, s) + f"  [{layout(trees[label])[0]} in {trees[label]}]")
    if "before" in stats:
        b, a = stats["before"], stats["after"]
        print(f"  after/before: start-up {a['startup_ms'] / b['startup_ms']:.2f}x, "
              f"process wall {a['wall_ms'] / b['wall_ms']:.2f}x, "
              f"RSS {a['rss_mib'] / b['rss_mib']:.2f}x")


if __name__ == "__main__":
    main()
