"""Rate limiting per API key: a token bucket for each key id, in this process's memory.

A key may send ``burst`` requests at once, then ``rate_per_s`` a second on average; a request
beyond that is refused with 429 and ``Retry-After`` (whole seconds until a token is back). It is
checked after the key is (``api.deps.require``), so only real keys get a bucket: the buckets are
as many as the keys, and a flood of made-up keys costs their lookups, not memory. Routes without
a key (``/healthz``, ``/openapi.json``, the OCPP endpoint) are not limited.

Several service instances behind a load balancer each keep their own buckets, so a key may get
up to the limit times the number of instances; the limit is there to keep one runaway client
from starving the others on an instance, not as a quota.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets by key id; thread-safe (key checks run on worker threads)."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id: (tokens, at)
        self._lock = threading.Lock()

    def take(self, key_id: str) -> int:
        """Take a token for ``key_id``: 0 when there was one, else the whole seconds to wait
        for the next (at least 1)."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0
            self._buckets[key_id] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate_per_s))
