"""Telling observers what happened, without letting an observer break what it observes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["notify"]

_logger = logging.getLogger("eventcore.resilience")

T = TypeVar("T")


def notify(observers: Iterable[Callable[[T], None]], event: T) -> None:
    """Call each observer with ``event``. An observer that raises is logged and skipped:
    a broken metrics hook must not change what a breaker decides or a call returns."""
    for observer in tuple(observers):
        try:
            observer(event)
        except Exception:
            _logger.exception("observer %r failed on %r", observer, event)
