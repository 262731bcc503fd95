"""Make N load-test tenants for ``inferq dev``: a tenants TOML (key hashes only) and their keys.

Fair share only shows with several tenants, and ``inferq dev`` alone knows one (its dev key).
This writes a tenants file that ``inferq dev`` merges with its own (``INFERQ_TENANTS_FILE``) and
prints the matching ``INFERQ_LOADTEST_KEYS`` line. Keys are random; only their SHA-256 is
stored in the TOML, as the gateway expects. Example::

    eval "$(python loadtest/make_tenants.py 4 --out .inferq/load-tenants.toml)"
    INFERQ_TENANTS_FILE=.inferq/load-tenants.toml inferq dev &
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from pathlib import Path


def tenants_toml(keys: list[str], weights: list[float]) -> str:
    """One ``[tenants.loadN]`` table per key: weight and the key's hash, other limits default."""
    out = []
    for i, (key, weight) in enumerate(zip(keys, weights, strict=True)):
        digest = hashlib.sha256(key.encode()).hexdigest()
        out.append(f'[tenants.load{i}]\nweight = {weight}\napi_key_sha256 = ["{digest}"]\n')
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("count", type=int, help="number of tenants (1..100)")
    p.add_argument("--out", type=Path, required=True, help="tenants TOML to write")
    p.add_argument("--weights", default="", help="comma separated weights (default: all 1)")
    args = p.parse_args(argv)
    if not 1 <= args.count <= 100:
        p.error("count must be within 1..100")
    weights = [float(w) for w in args.weights.split(",") if w] or [1.0] * args.count
    if len(weights) != args.count:
        p.error("give one weight per tenant")
    keys = [f"lt_{secrets.token_urlsafe(24)}" for _ in range(args.count)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(tenants_toml(keys, weights))
    args.out.chmod(0o600)
    print(f"export INFERQ_LOADTEST_KEYS={','.join(keys)}")
    print(f"# wrote {args.out}: pass it to inferq dev as INFERQ_TENANTS_FILE", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
