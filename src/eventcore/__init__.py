"""eventcore: distributed, event-sourced services for asyncio."""

from eventcore._version import __version__
from eventcore.command import Command, Writes
from eventcore.errors import (
    CommandFailed,
    CommandRejected,
    CommandTimeout,
    ConcurrencyConflict,
    DecodeError,
    DuplicateEventId,
    EmptyAppend,
    EventcoreError,
    InvalidAppend,
    InvalidCommand,
    InvalidInput,
    InvalidStreamId,
    InvalidUrl,
    NotFound,
    PayloadTooLarge,
    RetriesExhausted,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    TooManyStreams,
    UndeclaredStream,
    UnknownEventType,
)
from eventcore.events import Event, EventRegistry
from eventcore.executor import Executor
from eventcore.pipeline import CommandResult
from eventcore.retry import RetryPolicy
from eventcore.store import AppendResult, EventStore, open_store
from eventcore.types import Metadata, NewEvent, StoredEvent, StreamHead, StreamId

__all__ = [
    "AppendResult",
    "Command",
    "CommandFailed",
    "CommandRejected",
    "CommandResult",
    "CommandTimeout",
    "ConcurrencyConflict",
    "DecodeError",
    "DuplicateEventId",
    "EmptyAppend",
    "Event",
    "EventRegistry",
    "EventStore",
    "EventcoreError",
    "Executor",
    "InvalidAppend",
    "InvalidCommand",
    "InvalidInput",
    "InvalidStreamId",
    "InvalidUrl",
    "Metadata",
    "NewEvent",
    "NotFound",
    "PayloadTooLarge",
    "RetriesExhausted",
    "RetryPolicy",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "StoredEvent",
    "StreamHead",
    "StreamId",
    "StreamNotFound",
    "TooManyStreams",
    "UndeclaredStream",
    "UnknownEventType",
    "Writes",
    "__version__",
    "open_store",
]
