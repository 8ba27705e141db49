"""A labeled fleet simulator: realistic charging sessions with known, injected anomalies.

``simulate(config, events_path, labels_path)`` writes a network's events as JSON Lines
(CONTRACTS.md section 1) and the ground truth of what went wrong (section 2). Stations, cars,
arrivals and charging physics follow real vehicles' curves; anomalies of every kind of section
3 are injected into a chosen fraction of sessions, each kind by its injector (``injectors/``,
keyed by ``AnomalyKind``). The same configuration writes the same bytes.
"""

from .config import SimulationConfig, SimulationSummary
from .run import simulate

__all__ = ["SimulationConfig", "SimulationSummary", "simulate"]
