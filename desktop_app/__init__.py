"""Guidance Studio's desktop application (PySide6 + qasync): views over the `core` engine."""
