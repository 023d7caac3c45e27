"""A plugin that dies before its handshake, every time."""

import sys

print("fatal: cannot open /nonexistent/engine.conf", file=sys.stderr, flush=True)
sys.exit(3)
