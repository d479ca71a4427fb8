"""Backups, verification, retention, restore and DR drills. See backup/README.md for the design."""
