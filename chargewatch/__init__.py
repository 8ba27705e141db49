"""chargewatch: monitoring for electric-vehicle charging networks.

The kernel, shared by every stage and importing none of them (DESIGN.md, Layout):

- ``settings``: the ``CHARGEWATCH_*`` settings, and every path in the data directory;
- ``errors``: the one error tree;
- ``kinds`` and ``roles``: the anomaly kinds and the API-key roles;
- ``events`` and ``columns``: canonical events, their JSON Lines codec, and its columnar twin;
- ``schema``: how events are laid out in InfluxDB, written and read back;
- ``flags``: detector flags, as JSON Lines and in InfluxDB;
- ``influx``: the InfluxDB client, its batch writer and the local development server;
- ``state``: the state database (counters, stations, API keys, job cursors).

The command line (which ``python -m chargewatch`` runs) and the wiring of ``serve`` live in the
shell, ``service/``.
"""

__version__ = "0.1.0"
