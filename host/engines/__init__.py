"""Engine plugins as supervised out-of-process gRPC servers."""
