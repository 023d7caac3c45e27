"""The node's side of the chain: a local development chain (the client itself is ``c2d.chain``)."""
