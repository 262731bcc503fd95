"""Layers run one way, and each role process loads only what it runs.

The import contracts in pyproject.toml are checked with import-linter, on this tree and on a
small tree that breaks them on purpose (so a check that cannot fail would show here). Each
role module is then imported in a fresh interpreter, the way ``inferq <role>`` starts, and
its ``sys.modules`` is inspected: a contract sees only imports written in our code, this sees
what actually gets loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
INFERENCE_RUNTIMES = ("onnxruntime", "openvino", "tensorrt", "pycuda", "onnx", "safetensors",
                      "gpu_runner", "models.build")
HTTP_STACK = ("litestar", "uvicorn")
# import-linter has no ``python -m`` entry; this is what its ``lint-imports`` script runs.
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; " \
               "sys.exit(lint_imports_command())"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the tree in ``cwd`` (its pyproject.toml), without a cache."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200"}  # no wrapped names
    return subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def contract_names() -> list[str]:
    """The contracts' names, in pyproject.toml's order."""
    return [c["name"] for c in
            tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]]


def verdicts(output: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN, from lint-imports' report (names may wrap lines)."""
    flat = " ".join(output.split())
    out = {}
    for name in contract_names():
        at = flat.find(" ".join(name.split()))
        assert at >= 0, f"contract {name!r} not in the report:\n{output}"
        tail = flat[at + len(" ".join(name.split())):].lstrip()
        out[name] = "KEPT" if tail.startswith("KEPT") else \
            "BROKEN" if tail.startswith("BROKEN") else "?"
    return out


def test_every_import_contract_is_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(verdicts(run.stdout).values()) == {"KEPT"}, run.stdout


# A tree with every module the contracts name, importing nothing; then two violations.
SKELETON = ("schemas", "core", "models", "models.bucketing", "models.config", "models.errors",
            "models.repository", "models.tokenize", "models.build", "store", "gateway",
            "gateway.app", "scheduler", "scheduler.service", "gpu_runner", "inferq",
            "inferq.roles", "inferq.roles.gateway", "inferq.roles.scheduler",
            "inferq.roles.runner")


def write_tree(root: Path, imports: dict[str, str]) -> None:
    for module in SKELETON:
        parts = module.split(".")
        package = root.joinpath(*parts[:-1]) if len(parts) > 1 else root
        is_package = any(m.startswith(module + ".") for m in SKELETON) or len(parts) == 1
        path = root.joinpath(*parts, "__init__.py") if is_package else \
            package / f"{parts[-1]}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(imports.get(module, ""))
    (root / "pyproject.toml").write_text(PYPROJECT.read_text())


def test_the_contracts_catch_a_role_importing_another_or_a_runtime(tmp_path: Path) -> None:
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    write_tree(clean, {"inferq.roles.gateway": "import gateway.app\n"})
    run = lint_imports(clean)
    assert run.returncode == 0 and set(verdicts(run.stdout).values()) == {"KEPT"}, run.stdout

    write_tree(broken, {
        "gateway.app": "import scheduler.service\n",  # a role importing another role
        "inferq.roles.gateway": "import gateway.app\nimport gpu_runner\n",  # and the runtime
    })
    run = lint_imports(broken)
    assert run.returncode != 0, run.stdout
    layers, build, runtime = contract_names()
    assert verdicts(run.stdout) == {layers: "BROKEN", build: "KEPT", runtime: "BROKEN"}, \
        run.stdout
    assert "gateway.app -> scheduler.service" in run.stdout
    assert "inferq.roles.gateway -> gpu_runner" in run.stdout


# The role's start-up in a fresh interpreter: import its module (and for the gateway build
# the app, which connects nothing until its lifespan runs), then list what got loaded.
PROBE = """
import json, sys
from core.config import Settings
role = sys.argv[1]
if role == "gateway":
    import inferq.roles.gateway
    from gateway.app import create_app
    create_app(Settings(tenants_file=None))
else:
    import inferq.roles.scheduler
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(role: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-c", PROBE, role], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def present(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize("role, forbidden", [
    ("gateway", (*INFERENCE_RUNTIMES, "scheduler")),
    ("scheduler", (*INFERENCE_RUNTIMES, *HTTP_STACK, "gateway")),
])
def test_a_role_process_loads_no_inference_runtime(role: str, forbidden: tuple[str, ...]) -> None:
    modules = loaded_by(role)
    assert f"inferq.roles.{role}" in modules  # the probe did import the role
    assert present(modules, forbidden) == []
