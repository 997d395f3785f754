"""Clients shared by sources, sinks and transforms (connection settings, API watches)."""
