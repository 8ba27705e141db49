"""Ingest: everything that brings events in (files, HTTP batches, OCPP), validates them,
pseudonymizes id tags and writes them to InfluxDB; and the fleet simulator that feeds it."""
