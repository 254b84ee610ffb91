"""The standing adversarial suite: hostile input against every edge (issue 9)."""
