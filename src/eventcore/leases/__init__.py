"""Leases: heartbeats with a time to live, live holders, exclusive claims."""
