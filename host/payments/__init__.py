"""Paid compute: the escrow lock before a workflow runs, and the claim with its proof after it ends."""
