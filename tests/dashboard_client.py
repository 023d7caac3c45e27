"""Helpers for the dashboard's tests: signing in over plain HTTP, and workflows that run until stopped."""

from __future__ import annotations

import html
import re
from typing import Any

import requests
from eth_account import Account
from eth_account.messages import encode_defunct

ENV = "dash-env"
STUB_ENVIRONMENTS = f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]'
_CHALLENGE = re.compile(r'<pre id="challenge">(.*?)</pre>', re.S)


def challenge_of(page: str) -> str:
    """The text a sign-in page asks to sign."""
    found = _CHALLENGE.search(page)
    assert found, "no challenge on the sign-in page"
    return html.unescape(found.group(1))


def sign(text: str, key: str) -> str:
    """``text`` signed as a wallet's personal_sign does (EIP-191), in hex."""
    return "0x" + Account.sign_message(encode_defunct(text=text), key).signature.hex().removeprefix("0x")


def signed_in(base: str, key: str) -> requests.Session:
    """A browser-like session signed in with ``key``."""
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=10)
    reply = session.post(f"{base}/login", data={"signature": sign(challenge_of(page.text), key)}, timeout=10)
    assert reply.status_code == 200 and reply.url == f"{base}/", (
        reply.status_code,
        reply.url,
        reply.text[:300],
    )
    return session


def endless(lines_every: float = 0.3, extra_stages: int = 0) -> dict[str, Any]:
    """A free workflow whose first stage prints numbered lines until it is stopped (or its duration ends);
    ``extra_stages`` more run one after the other after it."""
    stages: list[dict[str, Any]] = [
        {
            "index": 0,
            "algorithm": {
                "rawcode": f'i=0; while true; do echo "line $i"; i=$((i+1)); sleep {lines_every}; done',
                "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
            },
        }
    ]
    for index in range(1, extra_stages + 1):
        stages.append(
            {
                "index": index,
                "runAfter": [index - 1],
                "algorithm": {
                    "rawcode": "echo after",
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
        )
    return {"environment": ENV, "stages": stages}
