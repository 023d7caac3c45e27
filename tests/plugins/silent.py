"""A plugin that never prints its handshake (stuck at start-up)."""

import sys
import time

print("loading a very large model...", file=sys.stderr, flush=True)
time.sleep(60)
