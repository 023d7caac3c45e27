"""Request signatures stay byte-compatible with eth-account (and so with ethers' signMessage)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from c2d import auth
from c2d.compute.v1 import compute_pb2
from host.auth import verify_consumer
from host.errors import RequestError


def test_signatures_match_eth_account_and_recover() -> None:
    key = auth.new_private_key()
    text = auth.signing_text(
        "0x" + "ab" * 20, 7, "/c2d.compute.v1.ComputeService/GetComputeStatus", "00" * 32
    )
    ours = auth.sign_text(key, text)
    theirs = bytes(Account.sign_message(encode_defunct(text=text), key).signature)
    assert ours == theirs
    assert auth.address_of(key) == Account.from_key(key).address.lower()
    assert auth.recover_signer(text, ours) == auth.address_of(key)
    assert auth.recover_signer(text + "x", ours) != auth.address_of(key)


@pytest.mark.parametrize("signature", [b"", b"\x00" * 65, b"\x01" * 64 + b"\x05", b"\x01" * 70])
def test_malformed_signatures_raise_value_error(signature: bytes) -> None:
    with pytest.raises(ValueError):
        auth.recover_signer("text", signature)


def test_the_node_refuses_an_address_with_anything_after_it() -> None:
    """``re.match`` with ``$`` lets a trailing newline through; an address must match whole."""
    address = auth.address_of(auth.new_private_key())
    request = compute_pb2.GetComputeStatusRequest(all=True)
    request.auth.address, request.auth.signature = address + "\n", b"\x01" * 65
    with pytest.raises(RequestError, match="is not an Ethereum address") as refused:
        asyncio.run(verify_consumer("/c2d.compute.v1.ComputeService/GetComputeStatus", request))
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
