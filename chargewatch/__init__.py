"""chargewatch: monitoring for electric-vehicle charging networks.

The shared kernel: settings, errors, canonical events and their JSON Lines codec, the InfluxDB
client, and the command line that wires the stages (``ingest``, ``analytics``, ``alerts``,
``models``, ``api``) together.
"""

__version__ = "0.1.0"
