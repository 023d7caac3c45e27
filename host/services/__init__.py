"""The node's gRPC services: ComputeService (public) and PodService (pods calling back)."""
