"""Rollups, alert rules and the anomaly model. Not built yet: see issue #6."""
