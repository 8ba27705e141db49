"""Grafana: data source and dashboard provisioning, and the code that generates dashboards."""
