"""The shell: the ``chargewatch`` command line and the wiring of ``serve``, the composition root.

Everything else is a stage (``ingest``, ``analytics``, ``alerts``, ``models``, ``api``,
``grafana``) or the kernel (``chargewatch``); only this package imports them all and connects them.
"""
