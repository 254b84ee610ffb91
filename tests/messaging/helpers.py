"""Small steps the bus tests are written in; they live in ``eventcore.testing`` with the
bus contract."""

from __future__ import annotations

from eventcore.testing._bus_steps import PATIENCE, TOPIC, consume, ids, outgoing, settle

__all__ = ["PATIENCE", "TOPIC", "consume", "ids", "outgoing", "settle"]
