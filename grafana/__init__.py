"""Grafana: data source and dashboard provisioning, and the code that generates dashboards.

``build.render()``/``build.write(DIR)`` produce the provisioning tree (README, Grafana);
``queries.QUERIES`` holds every query the dashboards run; ``checks`` lints them and checks the
dashboards against the constraints of Grafana's dashboard schema that they rely on.
"""
