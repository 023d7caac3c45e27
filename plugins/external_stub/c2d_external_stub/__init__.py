"""external_stub: the smallest whole c2d engine, and the template for third-party engines.

It runs each job as a local process in a per-job directory laid out like
the container contract. It gives no container isolation (and says so in its
capabilities), so it refuses to run unless its config enables it.
"""

__version__ = "0.1.0"
