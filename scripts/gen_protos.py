"""Regenerates the committed Python protobuf/gRPC modules from proto/.

Run from anywhere: ``python scripts/gen_protos.py``. With ``--check`` it
generates into a temporary directory and exits 1 if the committed modules
differ, which is what the staleness test does.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "sdk"
PACKAGE = "c2d"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Runs protoc for every proto file and adds the package __init__ files."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_DIR)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for proto in proto_files():
        package_dir = out_dir / proto.parent.relative_to(PROTO_DIR)
        while package_dir != out_dir:
            (package_dir / "__init__.py").touch()
            package_dir = package_dir.parent


def generated_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in (root / PACKAGE).rglob("*") if p.name.endswith(GENERATED_SUFFIXES)}


def stale_files() -> list[str]:
    """Names the committed generated files that differ from a fresh run."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh, committed = generated_files(fresh_root), generated_files(OUT_DIR)
        differ = [
            str(rel)
            for rel in sorted(fresh | committed)
            if rel not in fresh
            or rel not in committed
            or not filecmp.cmp(fresh_root / rel, OUT_DIR / rel, shallow=False)
        ]
    return differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed modules are stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated modules (run python scripts/gen_protos.py):", *stale, sep="\n  ")
            return 1
        print("generated modules are up to date")
        return 0
    for old in generated_files(OUT_DIR):
        (OUT_DIR / old).unlink()
    generate(OUT_DIR)
    print(f"generated {len(generated_files(OUT_DIR))} modules under {OUT_DIR / PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
