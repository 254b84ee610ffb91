"""Topics as JetStream streams: one stream per topic, one subject per partition.

Topic ``t`` in namespace ``ns`` is the stream ``{ns}_{t}`` on subjects ``{ns}.{t}.*``;
partition ``p`` is the subject ``{ns}.{t}.{p}``. The partition count is written in
the stream's description (server 2.9 has no stream metadata), so a topic keeps the
count it was created with whatever a later bus URL says.

The duplicate window (``Nats-Msg-Id``) is ten minutes: within it JetStream stores a
re-published message once; past it a re-publish is stored again and the subscriber's
inbox makes the second delivery harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from eventcore.errors import BusError

__all__ = ["DUPLICATE_WINDOW", "TopicStreams"]

#: Seconds within which JetStream de-duplicates a message id.
DUPLICATE_WINDOW = 600.0
_DESCRIPTION = re.compile(r"eventcore topic \S+ partitions=(\d+)")


class TopicStreams:
    """Finds or creates each topic's stream once per bus and remembers its partition count."""

    def __init__(self, js: JetStreamContext, namespace: str, partitions: int) -> None:
        self._js = js
        self.namespace = namespace
        self._new_partitions = partitions
        self._known: dict[str, int] = {}

    def stream(self, topic: str) -> str:
        return f"{self.namespace}_{topic}"

    def subject(self, topic: str, partition: int) -> str:
        return f"{self.namespace}.{topic}.{partition}"

    def known(self, topic: str) -> int | None:
        """The partition count of ``topic`` if this bus has seen it, else None."""
        return self._known.get(topic)

    def forget(self, topics: Iterable[str]) -> None:
        """Look these topics' streams up again next time."""
        for topic in topics:
            self._known.pop(topic, None)

    async def partitions(self, topic: str) -> int:
        """``topic``'s partition count, creating its stream when it has none yet."""
        count = self._known.get(topic)
        if count is None:
            count = await self._ensure(topic)
            self._known[topic] = count
        return count

    async def _ensure(self, topic: str) -> int:
        name = self.stream(topic)
        try:
            info = await self._js.stream_info(name)
        except NotFoundError:
            config = StreamConfig(
                name=name,
                description=f"eventcore topic {topic} partitions={self._new_partitions}",
                subjects=[f"{self.namespace}.{topic}.*"],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.OLD,
                duplicate_window=DUPLICATE_WINDOW,
            )
            try:
                info = await self._js.add_stream(config)
            except BadRequestError as refused:
                # Another process created it first (with its own count): use theirs.
                # If there is none, the server refused our stream itself (its subjects
                # taken by another stream, say): that is the error to tell.
                try:
                    info = await self._js.stream_info(name)
                except NotFoundError:
                    raise refused from None
        match = _DESCRIPTION.fullmatch(info.config.description or "")
        if match is None:
            raise BusError(f"stream {name!r} exists but was not created by eventcore")
        return int(match.group(1))
