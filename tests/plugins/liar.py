"""Prints a handshake naming protocol version 7 without negotiating."""

import time

print("1|7|unix|/tmp/nowhere.sock|grpc", flush=True)
time.sleep(30)
