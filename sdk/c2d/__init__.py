"""The Compute-to-Data SDK: clients, the command line, the engine plugin kit and its conformance suite."""

import os

# gRPC's fork handlers serve processes that fork and keep using gRPC in the child. Ours fork only to
# exec (subprocess: the node starting plugins and dev chains, the conformance harness), and with the
# handlers on, a child can abort before its exec: the poller gRPC restarts in it finds its epoll fd
# closed (grpc/grpc#43157; seen here as a plugin "exited with status -6 before its handshake").
# Read when grpc is first imported; an explicit setting wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
