"""The hub's deployment controller (see controller.py)."""

from clusternet_hub.controller.controller import Controller

__all__ = ["Controller"]
