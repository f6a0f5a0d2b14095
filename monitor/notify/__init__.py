"""Notifier registry: provider type -> class. Adding a pager is one module + one line."""
