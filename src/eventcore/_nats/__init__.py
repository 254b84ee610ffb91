"""NATS plumbing shared by the bus and leases: KV helpers and error translation."""
