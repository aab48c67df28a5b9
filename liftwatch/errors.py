"""Liftwatch's exception hierarchy, drawn once.

    LiftwatchError                 base of everything Liftwatch raises on purpose
    ├── ConfigurationError         settings, connections, missing services: an operator fixes it
    ├── MigrationError             schema cannot be brought up to date (edited or failing migration)
    ├── ImportFileError            an import CSV is wrong; carries the line number and the column
    └── ContractError              an MQTT payload breaks the contract; carries the reject reason

The CLI turns a LiftwatchError into its message and exit code 1, never a traceback.
"""

from __future__ import annotations


class LiftwatchError(Exception):
    """Base class; the message is written for the person who has to act on it."""


class ConfigurationError(LiftwatchError):
    pass


class MigrationError(LiftwatchError):
    pass


class ImportFileError(LiftwatchError):
    def __init__(self, message: str, *, line: int | None = None, column: str | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line
        self.column = column


class ContractError(LiftwatchError):
    """A payload or topic that the contract rejects; `reason` is one of contract.RejectReason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
