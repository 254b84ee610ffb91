"""What the command receiver and the command sender share: each is a worker whose loop is
one ``Subscriber``'s, so ``run``, ``stop`` and ``ready`` are that subscriber's."""

from __future__ import annotations

from eventcore.messaging.subscriber import Subscriber

__all__ = ["SubscribedWorker"]


class SubscribedWorker:
    """The ``Worker`` lifecycle of a class that sets ``_subscriber`` in its constructor
    (its ``status`` is its own)."""

    _subscriber: Subscriber

    async def run(self) -> None:
        """Work until ``stop()``; see ``Subscriber.run``."""
        await self._subscriber.run()

    def stop(self) -> None:
        self._subscriber.stop()

    async def ready(self) -> None:
        await self._subscriber.ready()
