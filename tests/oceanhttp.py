"""A small Python client of the node's Ocean-compatible HTTP API, for tests: Ocean's signatures
(keccak256(consumerAddress + nonce + command), personal-signed) written from ocean-node's rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_hash.auto import keccak

from c2d import auth
from c2d.client import Client
from nodeproc import NodeProcess, running_node, wait_for

ROOT = Path(__file__).resolve().parent.parent
API = "/api/services"
ENV = "stub-local"
DATASET = json.loads((ROOT / "examples" / "dataset.json").read_text())
DID = DATASET["did"]
OCEANJS = ROOT / "tests" / "oceanjs"
OCEANJS_MODULES = ("@oceanprotocol/lib", "@oceanprotocol/contracts", "ethers")
SERVICE = DATASET["services"][0]["serviceId"]


def ocean_signature(
    key: str, address: str, nonce: int | str, command: str, *, as_hex_text: bool = False
) -> str:
    """What ocean.js sends: the signature of the 32-byte hash (or, ``as_hex_text``, of its 0x-hex form)."""
    digest = keccak(f"{address}{nonce}{command}".encode())
    message: str | bytes = "0x" + digest.hex() if as_hex_text else digest
    return "0x" + auth.sign_text(key, message).hex()


class Ocean:
    """One consumer of the node's Ocean face."""

    def __init__(self, base: str, key: str | None = None) -> None:
        self.base = base
        self.key = key or auth.new_private_key()
        self.address = auth.address_of(self.key)

    def url(self, path: str) -> str:
        return f"{self.base}{API}/{path}"

    def nonce(self) -> int:
        return int(
            requests.get(self.url("nonce"), params={"userAddress": self.address}, timeout=10).json()["nonce"]
        )

    def signed(self, command: str, nonce: int | None = None) -> dict[str, str]:
        nonce = self.nonce() + 1 if nonce is None else nonce
        return {
            "consumerAddress": self.address,
            "nonce": str(nonce),
            "signature": ocean_signature(self.key, self.address, nonce, command),
        }

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status as ocean.js asks for it (unsigned, by address and job id)."""
        params = {"consumerAddress": self.address, "jobId": job_id}
        (job,) = requests.get(self.url("compute"), params=params, timeout=10).json()
        return dict(job)

    def ended(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        """The job's status once it is no longer running."""
        return dict(
            wait_for(
                lambda: (job := self.status(job_id)) and not job["isRunning"] and job,
                timeout,
                "the job's end",
            )
        )

    def free_start(self, rawcode: str = "echo hi\n", **body: Any) -> requests.Response:
        payload = {
            "environment": ENV,
            "datasets": [],
            "algorithm": {
                "meta": {
                    "rawcode": rawcode,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1.36"},
                }
            },
            **self.signed("freeStartCompute"),
            **body,
        }
        return requests.post(self.url("freeCompute"), json=payload, timeout=30)

    def create_token(self, **body: Any) -> requests.Response:
        """POST /auth/token, signed over createAuthToken (``body`` adds or overrides fields)."""
        signed = self.signed("createAuthToken")
        payload = {
            "address": signed["consumerAddress"],
            "nonce": signed["nonce"],
            "signature": signed["signature"],
        }
        return requests.post(self.url("auth/token"), json={**payload, **body}, timeout=10)

    def token(self, **body: Any) -> str:
        response = self.create_token(**body)
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def invalidate(self, token: str, **body: Any) -> requests.Response:
        """POST /auth/token/invalidate, signed over invalidateAuthToken."""
        signed = self.signed("invalidateAuthToken")
        payload = {
            "address": signed["consumerAddress"],
            "nonce": signed["nonce"],
            "signature": signed["signature"],
        }
        return requests.post(
            self.url("auth/token/invalidate"), json={**payload, "token": token, **body}, timeout=10
        )

    def paid_body(
        self, env: str, chain_id: int, token: str, rawcode: str = "echo paid\n", **body: Any
    ) -> dict[str, Any]:
        """A signed paid start as ocean.js's computeStart sends it (the chain and token in ``payment``)."""
        return {
            "environment": env,
            "datasets": [],
            "algorithm": {
                "meta": {
                    "rawcode": rawcode,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1.36"},
                }
            },
            "maxJobDuration": 120,
            "chainId": chain_id,
            "payment": {"chainId": chain_id, "token": token, "maxJobDuration": 120, "resources": []},
            **self.signed("startCompute"),
            **body,
        }

    def paid_start(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.url("compute"), json=body, timeout=60)


@contextmanager
def ocean_node(data_dir: Path, *, register: bool = True) -> Iterator[NodeProcess]:
    """A node with the stub engine's environment and examples/dataset.json registered (unless
    ``register`` is False: a node restarted on the data dir of one that registered it)."""
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]',
        "C2D_ASSETS__DATA_ROOT": str(ROOT / "examples" / "data"),
    }
    with running_node(data_dir, env=env) as node:
        node.wait_environment(ENV)
        if register:
            with Client(node.address, node.node_key()) as operator:
                operator.register_asset(DATASET)
        yield node


def oceanjs_binary() -> str:
    """The ``node`` that runs tests/oceanjs; skips without it or its npm modules (fails in CI)."""
    binary = shutil.which("node")
    missing = [m for m in OCEANJS_MODULES if not (OCEANJS / "node_modules" / m / "package.json").is_file()]
    problem = (
        "node is not installed"
        if binary is None
        else f"npm modules missing in tests/oceanjs: {', '.join(missing)}"
        if missing
        else ""
    )
    if problem:
        message = f"{problem}; run bash scripts/setup-dev (npm ci in tests/oceanjs)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run ocean.js: {message}", pytrace=False)
        pytest.skip(message)
    assert binary is not None
    return binary


def oceanjs(binary: str, *args: str, timeout: float = 180) -> dict[str, Any]:
    """Runs ``node gateway.mjs ARGS`` in tests/oceanjs; its last line of output, as JSON."""
    result = subprocess.run(
        [binary, "gateway.mjs", *args],
        cwd=OCEANJS,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NODE_OPTIONS": ""},
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]  # ocean.js logs whole bundles
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary
