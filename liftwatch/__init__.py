"""Liftwatch shared kernel: settings, database access and migrations, the MQTT contract, the CLI."""

__version__ = "0.1.0"
