"""One daemon process: lock, sockets, services, queries, forwarding, shutdown."""
