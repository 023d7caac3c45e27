"""The database thread: every query the node makes runs here, never on the event loop.

peewee is synchronous, and SQL built and run on the loop stalled every RPC
behind it (75 % of a loaded node's time was peewee). One dedicated thread owns
the node's connection and runs each unit of work to its end before the next,
so a unit (a function passed to :func:`run`) is atomic with respect to every
other unit, exactly as a synchronous block on the loop used to be; put a whole
read-modify-write in one unit, inside ``database_proxy.atomic()`` when it must
be a transaction. SQLite allows one writer at a time anyway, so a single
thread costs no parallelism on the default store, and it needs no locking.

Code that is already off the loop (a thread of its own, a test) may still call
the models directly: peewee gives each thread its own connection.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from host.store import models

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _thread() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="c2d-db")
        return _executor


def _connected(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs ``fn`` on the database thread, connecting it to the bound database first if needed."""
    db = models.database_proxy.obj
    if db is not None and db.is_closed():
        db.connect(reuse_if_open=True)
    return fn(*args, **kwargs)


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs ``fn(*args, **kwargs)`` on the database thread and returns its result (or raises its error)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_thread(), functools.partial(_connected, fn, *args, **kwargs))


def close() -> None:
    """Closes the database thread's connection (the node is stopping, or another database is bound next)."""
    db = models.database_proxy.obj
    if db is None or _executor is None:
        return
    _thread().submit(lambda: db.is_closed() or db.close()).result()
