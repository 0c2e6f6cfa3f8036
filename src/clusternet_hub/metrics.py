"""Prometheus metrics of the hub, served on /metrics by the hub's aiohttp server."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

registrations = Counter("clusternet_registrations_total", "Registration requests decided, by result",
                        ["result"], registry=REGISTRY)
clusters = Gauge("clusternet_managed_clusters", "ManagedClusters known to the hub, by Ready status",
                 ["ready"], registry=REGISTRY)
heartbeat_age = Histogram("clusternet_heartbeat_age_seconds", "Age of the last heartbeat when checked",
                          buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=REGISTRY)
socket_connections = Gauge("clusternet_socket_connections", "Agent tunnels currently connected",
                           registry=REGISTRY)
socket_marks_pending = Gauge("clusternet_socket_marks_pending",
                             "Clusters whose SocketConnected mark this replica has yet to write", registry=REGISTRY)
socket_reconnects = Counter("clusternet_socket_reconnects_total", "Agent tunnel (re)connections accepted",
                            registry=REGISTRY)
socket_streams = Counter("clusternet_socket_streams_total", "Streams opened through agent tunnels",
                         registry=REGISTRY)
socket_bytes = Counter("clusternet_socket_bytes_total", "Bytes carried through agent tunnels",
                       ["direction"], registry=REGISTRY)
proxy_requests = Counter("clusternet_proxy_requests_total", "Proxy requests, by HTTP status code",
                         ["code"], registry=REGISTRY)
