"""Workflows: validation, capacity, scheduling, and following each stage on its engine."""
