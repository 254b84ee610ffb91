"""The HTTP face of a service."""
