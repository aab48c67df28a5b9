"""Statutory maintenance checklists as versioned data files (see README.md here)."""
