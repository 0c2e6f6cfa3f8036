"""Shared API of Clusternet-py: CRD models, well-known names, helpers used by hub and agent."""

__version__ = "0.1.0"
