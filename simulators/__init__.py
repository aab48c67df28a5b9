"""Simulated elevator fleet (MQTT) and technicians, with ground truth.

The core is pure and deterministic: `stream.FleetSim` turns (seed, fleet, window, options)
into samples and events in simulated-time order, so it can be hashed and tested without a
broker. Everything with I/O (registration, COPY backfill, MQTT publishing, the truth file)
sits around it in its own module; `simulators.cli` wires it into `liftwatch simulate`.
"""
