"""Services (a server's replicas), the manager of all of them, the catalog and its names."""
