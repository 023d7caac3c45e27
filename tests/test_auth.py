"""Request signatures stay byte-compatible with eth-account (and so with ethers' signMessage)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from c2d import auth


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
