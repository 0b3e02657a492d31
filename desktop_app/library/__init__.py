"""Kept results: the SQLite run library, its gallery, PNG input/output and GIF export."""
