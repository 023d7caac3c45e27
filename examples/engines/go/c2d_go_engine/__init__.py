"""Registers the Go engine (``examples/engines/go``) with the node: the node runs its binary."""

__version__ = "0.1.0"
