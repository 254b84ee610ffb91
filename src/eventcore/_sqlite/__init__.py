"""SQLite plumbing shared by the store, the bus and projection targets."""
