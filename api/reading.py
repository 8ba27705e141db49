"""Reading a request body within bounds: its size, and the time it may take to arrive.

A route that reads its body itself (event batches, verdicts) reads it here: at most ``limit``
bytes (413 beyond, before more is read), starting within ``grace_s`` and keeping up
``MIN_BODY_RATE`` on average after that (408 beyond), so that a body that never finishes holds
nothing for ever; a client that hangs up mid-body is one line in the log, not a traceback.
Refusals name the body as the read API names a parameter: ``body: <reason>``.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import HTTPException, Request, status
from starlette.requests import ClientDisconnect

__all__ = ["MIN_BODY_RATE", "read_limited", "too_large"]

logger = logging.getLogger(__name__)

# The slowest a body may come, on average, once its grace is over: 16 KiB/s is 128 kbit/s, a
# 2G (EDGE) link; a back office posting batches has far more. A 16 MiB body may so take at
# most the grace plus 17 minutes, and only by sending all the while.
MIN_BODY_RATE = 16 * 1024


async def read_limited(request: Request, *, limit: int, grace_s: float, route: str) -> list[bytes]:
    """The body's parts as they arrive (joining them is the caller's: copying 16 MiB takes
    10-25 ms, which the event loop should not spend); ``route`` names the route in the log."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(started + grace_s) as deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                parts.append(chunk)
                deadline.reschedule(started + grace_s + size / MIN_BODY_RATE)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_408_REQUEST_TIMEOUT,
            f"body: came too slowly ({size} bytes in {grace_s + size / MIN_BODY_RATE:.0f} s); "
            f"after {grace_s:g} s it must keep up {MIN_BODY_RATE // 1024} KiB/s",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        logger.info("%s: a client hung up after %d bytes of its body", route, size)
        raise HTTPException(400, "body: the client hung up before it was complete") from None
    return parts


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"body: larger than {limit} bytes")
