#!/usr/bin/env python3
"""Compile contracts/*.sol with solc-js (node_modules/solc) into sdk/c2d/chain/artifacts/*.json.

    python scripts/compile_contracts.py          # write the artifacts
    python scripts/compile_contracts.py --check  # exit 1 when the committed artifacts are stale

Offline: solc-js is the npm devDependency (npm ci), driven through its standard-JSON API.
The output is deterministic (pinned compiler, evmVersion and settings; sorted JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "contracts"
ARTIFACTS_DIR = ROOT / "sdk" / "c2d" / "chain" / "artifacts"
CONTRACTS = {"Escrow": "Escrow.sol", "TestAccessToken": "TestAccessToken.sol", "TestToken": "TestToken.sol"}
EVM_VERSION = "paris"  # py-evm and every chain we target run it

SETTINGS = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}

# Reads the standard-JSON input on stdin, prints {"version": ..., "output": ...}.
_NODE_SCRIPT = """
const solc = require('solc');
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const output = JSON.parse(solc.compile(input));
  process.stdout.write(JSON.stringify({version: solc.version(), output}));
});
"""


def _sources() -> dict[str, str]:
    return {name: (CONTRACTS_DIR / name).read_text(encoding="utf-8") for name in sorted(CONTRACTS.values())}


def compile_artifacts() -> dict[str, str]:
    """{artifact file name: its JSON text}."""
    if not (ROOT / "node_modules" / "solc").is_dir():
        raise SystemExit("node_modules/solc is missing: run npm ci")
    sources = _sources()
    standard_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    proc = subprocess.run(
        ["node", "-e", _NODE_SCRIPT],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"solc-js failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    output = result["output"]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    for problem in output.get("errors", []):
        print(problem.get("formattedMessage", problem), file=sys.stderr)
    if errors:
        raise SystemExit("compilation failed")
    artifacts = {}
    for contract, source_name in CONTRACTS.items():
        compiled = output["contracts"][source_name][contract]
        artifact = {
            "contract": contract,
            "source": f"contracts/{source_name}",
            "source_sha256": hashlib.sha256(sources[source_name].encode()).hexdigest(),
            "solc": result["version"],
            "evmVersion": EVM_VERSION,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
        }
        artifacts[f"{contract}.json"] = json.dumps(artifact, indent=1, sort_keys=True) + "\n"
    return artifacts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed artifacts are stale")
    args = parser.parse_args(argv)
    artifacts = compile_artifacts()
    if args.check:
        stale = [
            name
            for name, text in artifacts.items()
            if not (ARTIFACTS_DIR / name).exists()
            or (ARTIFACTS_DIR / name).read_text(encoding="utf-8") != text
        ]
        if stale:
            print(
                f"stale contract artifacts: {', '.join(stale)}; run python scripts/compile_contracts.py",
                file=sys.stderr,
            )
            return 1
        print("contract artifacts are up to date")
        return 0
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in artifacts.items():
        (ARTIFACTS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {(ARTIFACTS_DIR / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
