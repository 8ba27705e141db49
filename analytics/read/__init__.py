"""The read side of analytics: what the read API shows of sessions, profiles, flags and scores
(``ReadModel``, injected into ``api`` by ``service``)."""

from analytics.read.model import ReadModel

__all__ = ["ReadModel"]
