"""Helpers that read a whole store back; they live in ``eventcore.testing`` with the contracts."""

from __future__ import annotations

from eventcore.testing._reading import Snapshot, all_heads, read_log, snapshot

__all__ = ["Snapshot", "all_heads", "read_log", "snapshot"]
