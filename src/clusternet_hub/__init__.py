"""clusternet-hub: the parent-side operator (registration approval, cluster health, tunnel, proxy)."""
