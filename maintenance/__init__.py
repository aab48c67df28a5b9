"""Paperless maintenance (work orders, e-signatures, ledger, API). Not built yet: see issue #5."""
