"""URLs as they may be shown: in messages, logs and ``/healthz``, never with their credentials."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` without its user and password (``http://u:p@host:8086`` -> ``http://host:8086``).
    A URL that cannot be split is shown as its scheme alone."""
    try:
        parts = urlsplit(url)
        username, password, port = parts.username, parts.password, parts.port
    except ValueError:
        return url.split(":", 1)[0] + "://(address not shown)" if "://" in url else "(not shown)"
    if username is None and password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
