"""clusternet-agent: the child-side operator (registration, heartbeats, tunnel, pull deployments)."""
