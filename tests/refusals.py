"""Asserting a refused request: the error it got, and that the node stored nothing for the caller."""

from __future__ import annotations

from typing import Any

import pytest

from c2d.client import C2DError, Client
from c2d.compute.v1 import compute_pb2


def refused_start(
    client: Client, doc: dict[str, Any], payment: compute_pb2.Payment | None = None
) -> C2DError:
    """The refusal of a start (paid with ``payment``, else free); the caller has no workflow stored."""
    with pytest.raises(C2DError) as err:
        client.start(doc, free=payment is None, payment=payment)
    assert client.status(all=True) == [], "a refused start stored a workflow"
    return err.value


def refused_quote_and_start(client: Client, doc: dict[str, Any], payment: compute_pb2.Payment) -> C2DError:
    """The refusal of both the quote (InitializeCompute) and the free start, which must agree."""
    with pytest.raises(C2DError) as quoted:
        client.initialize(doc, payment)
    started = refused_start(client, doc)
    assert (quoted.value.code, quoted.value.message) == (started.code, started.message)
    return started
