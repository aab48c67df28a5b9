"""Elevator fleet and technician simulators with ground truth. Not built yet: see issue #4."""
