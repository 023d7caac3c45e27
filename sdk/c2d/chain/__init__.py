"""Chain access for paid compute: the escrow contract's committed artifacts.

The artifacts under ``artifacts/`` are built from ``contracts/*.sol`` by
``python scripts/compile_contracts.py`` (solc-js); a test fails when they are stale.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
# Which escrow contract a node settles through ([chain] escrow_kind): this project's
# (contracts/Escrow.sol) or Ocean Protocol's own (c2d.chain.ocean).
ESCROW_KINDS = ("c2d", "ocean")


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The compiled contract ``name`` ("Escrow", "TestToken"): {"abi", "bytecode", "solc", ...}."""
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def escrow_abi() -> list[dict[str, Any]]:
    return load_artifact("Escrow")["abi"]


def test_token_abi() -> list[dict[str, Any]]:
    return load_artifact("TestToken")["abi"]
