"""A plugin that prints something other than a handshake line."""

import sys
import time

print("Hello! I am definitely not a handshake.", flush=True)
print("some diagnostic the plugin wrote", file=sys.stderr, flush=True)
time.sleep(30)
