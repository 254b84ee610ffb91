"""Every error eventcore raises, grouped by what the caller can do about it.

::

    EventcoreError
    ├── InvalidInput                 fix the input; nothing was written
    │   ├── InvalidStreamId
    │   ├── InvalidAppend
    │   │   ├── EmptyAppend
    │   │   ├── UndeclaredStream
    │   │   ├── DuplicateEventId
    │   │   ├── PayloadTooLarge
    │   │   └── InvalidPayload       not JSON every reader can read
    │   ├── InvalidUrl
    │   ├── InvalidCommand
    │   ├── InvalidName              a topic, consumer group or service name
    │   ├── InvalidSaga              a saga definition that cannot run
    │   ├── InvalidSagaInput         a saga start or operator action the saga refuses
    │   ├── InvalidInstance          a service instance the registry refuses (a field too long...)
    │   ├── InvalidConfig            a configuration file (the federation hub's): every problem
    │   ├── InvalidSettings          a setting (argument, flag, environment variable) unusable
    │   └── BusRejected              the bus's server refused the request as it is (NATS 400)
    ├── ConcurrencyConflict          re-read and try again (the executor does)
    ├── CommandFailed                the command did not take effect
    │   ├── CommandRejected          a business rule said no; never retried
    │   ├── RetriesExhausted         conflicts outlasted the retry policy
    │   ├── CommandTimeout           the deadline passed (also a TimeoutError)
    │   └── TooManyStreams           stream discovery went past its cap
    ├── DecodeError                  stored or received bytes could not be read
    │   ├── UnknownEventType
    │   ├── UnknownCommandType       a command message of a type the service does not accept
    │   └── InvalidMessage           a bus message that is not a valid envelope
    │       └── MessageTooLarge
    ├── NotFound
    │   ├── StreamNotFound
    │   ├── DeadLetterNotFound
    │   └── DatabaseNotFound         a store, bus or target that open(create=False) found missing
    ├── StoreError                   the backend failed; the operation may be retried
    │   ├── StoreUnavailable
    │   └── StoreClosed
    ├── BusError                     the message bus failed; the operation may be retried
    │   ├── BusUnavailable
    │   └── BusClosed
    ├── RegistryError                the service registry's backend failed; it may be retried
    │   ├── RegistryUnavailable
    │   └── RegistryClosed
    ├── TransformFailed              a federation rule could not transform one event
    ├── CredentialsRefused           a server refused the credentials given: fix them
    ├── WorkerStopped                a worker was stopped before it was ready
    ├── ServiceCallError             a call to another service failed; it may succeed later
    │   ├── CircuitOpen              the target's breaker refused the call: nothing was sent
    │   ├── ServiceUnavailable       no live instance, or every attempt failed
    │   ├── CallTimeout              the call's time ran out (also a TimeoutError)
    │   └── ReplyTimeout             no reply to a command in time (also a TimeoutError)
    └── MissingDependency            a backend's driver is not installed (also an ImportError)

Each error is complete when raised: it carries the values a caller needs
(``ConcurrencyConflict.stream_id`` / ``expected`` / ``actual``) and its message
says what was wrong in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventcore.redaction import redact

__all__ = [
    "BusClosed",
    "BusError",
    "BusRejected",
    "BusUnavailable",
    "CallTimeout",
    "CircuitOpen",
    "CommandFailed",
    "CommandRejected",
    "CommandTimeout",
    "ConcurrencyConflict",
    "ConfigProblem",
    "CredentialsRefused",
    "DatabaseNotFound",
    "DeadLetterNotFound",
    "DecodeError",
    "DuplicateEventId",
    "EmptyAppend",
    "EventcoreError",
    "InvalidAppend",
    "InvalidCommand",
    "InvalidConfig",
    "InvalidInput",
    "InvalidInstance",
    "InvalidMessage",
    "InvalidName",
    "InvalidPayload",
    "InvalidSaga",
    "InvalidSagaInput",
    "InvalidSettings",
    "InvalidStreamId",
    "InvalidUrl",
    "MessageTooLarge",
    "MissingDependency",
    "NotFound",
    "PayloadTooLarge",
    "RegistryClosed",
    "RegistryError",
    "RegistryUnavailable",
    "ReplyTimeout",
    "RetriesExhausted",
    "SagaNotFound",
    "ServiceCallError",
    "ServiceUnavailable",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "StreamNotFound",
    "TooManyStreams",
    "TransformFailed",
    "UndeclaredStream",
    "UnknownCommandType",
    "UnknownEventType",
    "WorkerStopped",
]


class EventcoreError(Exception):
    """The root of every error raised by eventcore.

    Its message never holds a credential: text arguments pass through ``redact``, so an
    error that quotes a URL or a driver's message shows ``postgresql://app:***@db``.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


# --- bad input -------------------------------------------------------------------------------


class InvalidInput(EventcoreError, ValueError):
    """The input is wrong; nothing was written. Fix the input rather than retrying."""


class InvalidStreamId(InvalidInput):
    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid stream id {value!r}: {reason}")


class InvalidAppend(InvalidInput):
    """An append request that no store would accept."""


class EmptyAppend(InvalidAppend):
    def __init__(self) -> None:
        super().__init__("an append must write at least one event")


class UndeclaredStream(InvalidAppend):
    """A write to a stream that was not read (it has no expected version)."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(
            f"cannot write to stream {stream_id!r}: it was not read, so it has no expected version"
        )


class DuplicateEventId(InvalidAppend):
    def __init__(self, event_id: object, *, already_stored: bool) -> None:
        self.event_id = event_id
        self.already_stored = already_stored
        where = "is already in the store" if already_stored else "appears twice in one append"
        super().__init__(f"event id {event_id} {where}")


class PayloadTooLarge(InvalidAppend):
    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.size = size
        self.limit = limit
        super().__init__(
            f"payload of {event_type!r} is {size} bytes; the store accepts at most {limit}"
        )


class InvalidPayload(InvalidAppend):
    """A payload the store does not keep: what is allowed is in ``eventcore.store.payload``."""

    def __init__(self, event_type: str, reason: str) -> None:
        self.event_type = event_type
        self.reason = reason
        super().__init__(f"payload of {event_type!r} is refused: {reason}")


class InvalidUrl(InvalidInput):
    """A URL that names no usable store, bus or registry. Its credentials are masked
    (``redact``): ``url`` and the message never hold a password or a token."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact(url)
        self.reason = redact(reason)
        super().__init__(f"invalid URL {self.url!r}: {self.reason}")


class InvalidCommand(InvalidInput):
    """A command class or instance that the executor cannot run (a programming error)."""


class InvalidName(InvalidInput):
    """A topic, consumer group or service name that a bus cannot use."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {kind} {value!r}: {reason}")


class InvalidInstance(InvalidInput):
    """A service instance the registry refuses: ``field`` (``address``, ``version``,
    ``metadata``...) and what is wrong with it. Nothing was registered."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid instance {field}: {reason}")


class InvalidSaga(InvalidInput):
    """A saga definition that cannot run: found when the saga is declared, before any
    saga of its type starts. ``saga`` names it, ``reason`` says what is wrong."""

    def __init__(self, saga: str, reason: str) -> None:
        self.saga = saga
        self.reason = reason
        super().__init__(f"saga {saga!r} is not a valid definition: {reason}")


class InvalidSagaInput(InvalidInput):
    """A saga refused an input: a start with a bad id or data, or an operator action its
    status does not allow (only a stuck saga is retried or aborted). Nothing changed."""

    def __init__(self, saga: str, saga_id: str, reason: str) -> None:
        self.saga = saga
        self.saga_id = saga_id
        self.reason = reason
        named = f"saga {saga!r} {saga_id!r}" if saga_id else f"saga {saga!r}"
        super().__init__(f"{named}: {reason}")


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration file: where (``file``, ``rule`` — None outside
    the rules — and ``field``, a path such as ``targets[0].topic``) and why."""

    file: str
    rule: str | None
    field: str
    reason: str

    def __str__(self) -> str:
        rule = f"rule {self.rule!r}: " if self.rule is not None else ""
        return f"{self.file}: {rule}{self.field}: {self.reason}"


class InvalidSettings(InvalidInput):
    """A setting (an argument, a command-line flag, an ``EVENTCORE_*`` variable, a file it
    names) that cannot be used as given: ``setting`` names it, ``reason`` says why.
    Nothing starts half-configured."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = redact(reason)
        super().__init__(f"{setting}: {self.reason}")


class InvalidConfig(InvalidInput):
    """A configuration file that cannot be used as it is. ``problems`` holds every
    problem found (at least one), each naming the file, the rule and the field; the
    message shows the first and counts the others. Nothing is half-configured: a file
    with one bad rule is refused whole."""

    def __init__(self, file: str, problems: Sequence[ConfigProblem]) -> None:
        self.file = file
        self.problems = tuple(problems) or (ConfigProblem(file, None, "file", "refused"),)
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"{self.problems[0]}{tail}")


# --- concurrency ---------------------------------------------------------------------------


class BusRejected(InvalidInput):
    """The bus's server refused the request as it stands: sending it again fails the same
    way, so it is not an outage to wait out. On NATS a JetStream error of status 400 (a
    message over the stream's size limit, a stream configured otherwise than eventcore
    expects) or a message over the server's ``max_payload``.

    ``code`` and ``err_code`` are the server's status and JetStream error code when it
    gave them. Of a batch publish, the messages sent before the refused one may have
    been taken.
    """

    def __init__(
        self, message: str, *, code: int | None = None, err_code: int | None = None
    ) -> None:
        self.code = code
        self.err_code = err_code
        super().__init__(message)


class ConcurrencyConflict(EventcoreError):
    """A stream moved on since it was read. Re-read and decide again."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, but version {expected} was expected"
        )


# --- commands ------------------------------------------------------------------------------


class CommandFailed(EventcoreError):
    """A command did not take effect."""


class CommandRejected(CommandFailed):
    """A business rule refused the command. Raise it (or a subclass) from ``handle``.

    The executor never retries it: the same state would give the same answer.
    """


class RetriesExhausted(CommandFailed):
    def __init__(self, command: str, attempts: int, last: ConcurrencyConflict) -> None:
        self.command = command
        self.attempts = attempts
        self.last = last
        super().__init__(f"{command} still conflicted after {attempts} attempts: {last}")


class CommandTimeout(CommandFailed, TimeoutError):
    """The deadline passed before the command finished.

    If the deadline passed during the append, the events may have been written:
    run the command again with the same idempotency key to find out safely.
    """

    def __init__(self, command: str, seconds: float) -> None:
        self.command = command
        self.seconds = seconds
        super().__init__(f"{command} did not finish within {seconds:g} s")


class TooManyStreams(CommandFailed):
    def __init__(self, command: str, limit: int) -> None:
        self.command = command
        self.limit = limit
        super().__init__(f"{command} tried to read more than {limit} streams")


# --- reading -------------------------------------------------------------------------------


class DecodeError(EventcoreError):
    """Stored or received bytes could not be turned into an event."""


class UnknownEventType(DecodeError):
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(
            f"unknown event type {event_type!r}: register its class with the EventRegistry"
        )


class UnknownCommandType(DecodeError):
    """A command message whose type the receiving service does not accept."""

    def __init__(self, command_type: str) -> None:
        self.command_type = command_type
        super().__init__(
            f"unknown command type {command_type!r}: this service does not accept it "
            "(add its class to the CommandReceiver)"
        )


class InvalidMessage(DecodeError):
    """A message received from a bus that is not a valid eventcore envelope.

    ``reason`` says what is wrong; the subscriber dead-letters such a message.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid message: {reason}")


class MessageTooLarge(InvalidMessage):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"it is {size} bytes; at most {limit} are accepted")


class NotFound(EventcoreError):
    """The thing asked for does not exist."""


class StreamNotFound(NotFound):
    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"stream {stream_id!r} does not exist")


class SagaNotFound(NotFound):
    """No saga of that id (and type, when given) is in the owner's store; or the id
    names sagas of several types and ``saga_type`` must say which."""

    def __init__(self, saga_id: str, reason: str) -> None:
        self.saga_id = saga_id
        self.reason = reason
        super().__init__(f"saga {saga_id!r}: {reason}")


class DeadLetterNotFound(NotFound):
    def __init__(self, letter_id: str) -> None:
        self.letter_id = letter_id
        super().__init__(f"dead letter {letter_id!r} does not exist")


class DatabaseNotFound(NotFound):
    """The store, bus or projection target a URL names is not there (no such file, an
    empty one, no such PostgreSQL schema), and it was opened with ``create=False``:
    the caller only wants to look, and looking creates nothing."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact(url)
        self.reason = reason
        super().__init__(f"{self.url!r} not found: {reason}")


# --- infrastructure ------------------------------------------------------------------------


class StoreError(EventcoreError):
    """The storage backend failed. The operation may succeed if retried later."""


class StoreUnavailable(StoreError):
    """The backend could not be reached or gave up mid-operation."""


class StoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("the store is closed")


class BusError(EventcoreError):
    """The message bus failed. The operation may succeed if retried later."""


class BusUnavailable(BusError):
    """The bus could not be reached or gave up mid-operation."""


class CredentialsRefused(EventcoreError):
    """A server (NATS, PostgreSQL) refused the credentials it was given, or asked for some
    and got none. Retrying with the same ones fails the same way: fix the URL or its
    options. ``server`` names the server and ``where`` its address, never the secret."""

    def __init__(self, server: str, where: str, detail: str) -> None:
        self.server = server
        self.where = redact(where)
        super().__init__(f"{server} at {self.where} refused the credentials given: {detail}")


class BusClosed(BusError):
    def __init__(self) -> None:
        super().__init__("the bus is closed")


class RegistryError(EventcoreError):
    """The service registry's backend failed. The operation may succeed if retried later."""


class RegistryUnavailable(RegistryError):
    """The registry's file or server could not be reached or gave up mid-operation."""


class RegistryClosed(RegistryError):
    def __init__(self) -> None:
        super().__init__("the registry is closed")


class TransformFailed(EventcoreError):
    """A federation rule's transformation could not be applied to one event (a field
    path that crosses a list, a user function that raised…). The hub dead-letters that
    event for that rule with ``reason``; other rules and other events carry on."""

    def __init__(self, rule: str, step: str, reason: str) -> None:
        self.rule = rule
        self.step = step
        self.reason = reason
        super().__init__(f"rule {rule!r}: {step}: {reason}")


class ServiceCallError(EventcoreError):
    """A call to another service failed. The same call may succeed later."""


class CircuitOpen(ServiceCallError):
    """The circuit breaker of ``target`` refused the call: nothing was sent.

    ``retry_after`` is the number of seconds until the breaker lets a call through again
    (0 when it is half-open and its probes are all taken); ``state`` is ``"open"`` or
    ``"half-open"``.
    """

    def __init__(self, target: str, retry_after: float, state: str) -> None:
        self.target = target
        self.retry_after = retry_after
        self.state = state
        when = (
            f"retry in {retry_after:.3g} s"
            if retry_after > 0
            else "its probes are all in flight; retry shortly"
        )
        super().__init__(f"the circuit to {target!r} is {state}: {when}")


class ServiceUnavailable(ServiceCallError):
    """No live instance of ``service`` could answer: none was listed, none accepted a
    connection, or every attempt failed. ``reason`` says which; the cause is chained.

    A request that is not safe to repeat (a POST without an ``Idempotency-Key``) is never
    sent twice, so when its connection broke after it was sent, whether it took effect is
    unknown: ``reason`` says so.
    """

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"service {service!r} is unavailable: {reason}")


class CallTimeout(ServiceCallError, TimeoutError):
    """A call to ``target`` did not finish within ``seconds``. It may have taken effect."""

    def __init__(self, target: str, seconds: float) -> None:
        self.target = target
        self.seconds = seconds
        super().__init__(f"the call to {target!r} did not finish within {seconds:.3g} s")


class ReplyTimeout(ServiceCallError, TimeoutError):
    """No reply to the command sent to ``service`` came within ``seconds``.

    The command may still run (its request is stored and will be delivered): send it
    again under the same ``idempotency_key`` to get its reply without running it twice.
    """

    def __init__(self, service: str, command: str, idempotency_key: str, seconds: float) -> None:
        self.service = service
        self.command = command
        self.idempotency_key = idempotency_key
        self.seconds = seconds
        super().__init__(
            f"no reply from {service!r} to {command} (idempotency key {idempotency_key!r}) "
            f"within {seconds:.3g} s"
        )


# --- installation ----------------------------------------------------------------------------


class WorkerStopped(EventcoreError):
    """A long-running worker (relay, subscriber, projection runner) was stopped before it
    was ready: nothing it would have become ready for is going to happen."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        super().__init__(f"{worker} was stopped before it was ready")


class MissingDependency(EventcoreError, ImportError):
    """A backend's driver is not installed; the message names the extra that brings it."""

    #: The package and the extra that install each optional driver, by its top-level module.
    DRIVERS: dict[str, tuple[str, str]] = {
        "psycopg": ("psycopg", "postgres"),
        "psycopg_pool": ("psycopg-pool", "postgres"),
        "nats": ("nats-py", "nats"),
        "httpx": ("httpx", "runtime"),
        "cryptography": ("cryptography", "federation"),
        "jwt": ("PyJWT", "runtime"),
        "starlette": ("starlette", "runtime"),
        "prometheus_client": ("prometheus-client", "metrics"),
    }

    def __init__(self, package: str, extra: str, needed_for: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{needed_for} need {package}, which is not installed: pip install 'eventcore[{extra}]'"
        )

    @classmethod
    def of(cls, error: ImportError, needed_for: str) -> ImportError:
        """The error to raise for ``error``, met while importing a backend: this one when
        the missing module is an optional driver, else ``error`` itself (a real bug)."""
        driver = cls.DRIVERS.get((error.name or "").partition(".")[0])
        if driver is None or not isinstance(error, ModuleNotFoundError):
            return error
        return cls(*driver, needed_for)
