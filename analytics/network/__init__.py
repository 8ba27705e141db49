"""What operations and billing read about the network: stations, usage, per-user energy, KPIs
(``NetworkReader``, injected into ``api`` by ``service``)."""

from analytics.network.reader import MAX_WINDOW_NS, NetworkReader

__all__ = ["MAX_WINDOW_NS", "NetworkReader"]
