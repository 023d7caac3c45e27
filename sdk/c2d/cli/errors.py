"""Failures the CLI reports itself (the node's failures are c2d.client.C2DError)."""


class UsageError(Exception):
    """The command line or an input file is wrong (exit 2)."""


class ChainFailure(Exception):
    """The chain refused or could not be reached (exit 4); the text is the whole explanation."""
