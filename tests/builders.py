"""Small builders for test data; they live in ``eventcore.testing`` with the contracts."""

from __future__ import annotations

from eventcore.testing._builders import events, new_event, sid, writes

__all__ = ["events", "new_event", "sid", "writes"]
