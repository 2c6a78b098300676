"""Scenario files (TOML) shipped with attnbench."""
