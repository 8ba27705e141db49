"""Alerts for on-call, through Prometheus Alertmanager (DESIGN.md, Alerts).

chargewatch evaluates conditions and sends the resulting alerts to Alertmanager, which groups,
deduplicates, silences, inhibits, routes and delivers them; there is no such engine here.

- ``taxonomy``: every condition (OCPP error codes, station offline, anomaly kinds, the service's
  own health) -> alertname, owner, severity, runbook;
- ``model``: ``Alert`` (labels are the identity, annotations the detail) and its builders;
- ``lifecycle``: the pure decisions of each cycle (``plan_cycle``, then ``settle``);
- ``store``: the alert state in the state database;
- ``client``: Alertmanager's API v2, to every URL of an HA cluster (each alert's JSON kept
  between cycles);
- ``collector``: the garbage collector paused during a cycle's bursts of allocation;
- ``config``: the generated ``alertmanager.yml``;
- ``server``: the local Alertmanager for development, tests and CI.
"""
