"""Alerts: lifecycle, grouping, silences, inhibition and signed webhook delivery."""
