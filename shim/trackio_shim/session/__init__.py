"""The transport: the ZeroMQ client, its unacknowledged buffer, spool, discovery, autostart."""
