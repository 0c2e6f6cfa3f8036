"""The deployment pipeline as pure functions: scheduling, overrides, rendering, feed inventories, status.

No kopf, no I/O, no clock beyond what callers pass in: the hub's controller feeds these functions what it
has cached and writes what they return, and `kubectl clusternet render` previews a cluster's objects with
the very same code. Imports only `clusternet_api` (checked by import-linter in `make lint`).
"""
