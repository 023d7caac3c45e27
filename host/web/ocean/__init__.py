"""An Ocean Protocol-compatible face on the HTTP listener: ocean-node's compute routes over the
same services the gRPC API uses (docs/ocean-compatibility.md)."""
