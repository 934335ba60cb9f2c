"""Run a task group for the lifetime of a context, from any lifespan.

FastMCP closes lifespans inside a shielded cancel scope that it enters *after*
they started, so a task group held open across a lifespan's ``yield`` cannot exit
in order.  ``background(fn)`` runs ``fn`` (an ``anyio`` ``task_status``-style
function) under its own task group in a dedicated task, waits for it to report
started, and on exit cancels it and waits for it to finish: still one owner for
every background task, and nothing left running after the context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio

StartFn = Callable[..., Coroutine[Any, Any, Any]]
Failed = Callable[[str, Exception], None]
logger = logging.getLogger(__name__)


def task_name(fn: StartFn) -> str:
    """``fn``'s name in log lines (a ``functools.partial``'s function's)."""
    return str(getattr(getattr(fn, "func", fn), "__qualname__", fn))


async def _said(fn: StartFn, failed: Failed | None, *,
                task_status: anyio.abc.TaskStatus[Any]) -> None:
    """``fn``, whose failure is logged when it happens: it ends every background task
    (the group's); ``failed(name, error)`` is then told, to stop what they served."""
    try:
        await fn(task_status=task_status)
    except Exception as raised:
        exc = _cause(raised)
        then = ("the gateway stops, to be restarted" if failed is not None else
                "the gateway runs on without its background work (call records, alerts, "
                "config reloads, the change feed): restart it")
        logger.critical("background task %s failed: %s; %s", task_name(fn), exc, then,
                        exc_info=True)
        if failed is not None:
            failed(task_name(fn), exc)
        raise


def _cause(exc: Exception) -> Exception:
    """``exc``, or the one error a task group (a task's own: the manager's) wraps."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def background(*fns: StartFn, failed: Failed | None = None) -> AsyncIterator[None]:
    """Start each ``fn(task_status=...)`` in one task group; stop them all on exit.

    A task that fails ends them all, logged when it happens.  With ``failed``, it is
    told ``(task name, error)`` then (to stop serving), and the failure is not raised
    again on exit: ``failed`` has it."""
    started = anyio.Event()
    stop = anyio.Event()

    async def runner() -> None:
        async with anyio.create_task_group() as tg:
            for fn in fns:
                await tg.start(_said, fn, failed)
            started.set()
            await stop.wait()
            tg.cancel_scope.cancel()

    task = asyncio.get_running_loop().create_task(runner())
    waiter = asyncio.get_running_loop().create_task(started.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()  # a start-up failure: raise it here
    try:
        yield
    finally:
        stop.set()
        told = (Exception,) if failed is not None else ()
        with anyio.CancelScope(shield=True):
            with suppress(asyncio.CancelledError, *told):
                await task
