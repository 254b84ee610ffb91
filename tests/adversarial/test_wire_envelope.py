"""Wire fuzz, the reader: no bytes make ``decode_envelope`` raise anything but
``InvalidMessage``, from any depth of calls, and what it accepts is whole — every
attribute eventcore uses is usable and ``data`` is a payload a store would keep.

(It does not promise that whatever it accepts is a CloudEvent the SDK would take: an
extension it does not use, with a name CloudEvents forbids, is ignored, not refused.)"""

from __future__ import annotations

import sys
from collections.abc import Callable

import msgspec
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventcore.errors import InvalidMessage
from eventcore.messaging.envelope import DistributedEvent, decode_envelope
from eventcore.store.payload import payload_problem
from tests.adversarial.messages import KNOWN_HOSTILE, hostile_bodies, valid_body

#: Bounded so that the suite stays quick; the seeds differ on every run, so over many
#: runs the families are covered far more widely than one run's count.
EXAMPLES = 400
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(body: bytes) -> DistributedEvent | None:
    """The envelope, or None when refused; any other exception fails the test."""
    try:
        return decode_envelope(body)
    except InvalidMessage:
        return None


def _check_whole(envelope: DistributedEvent, body: bytes) -> None:
    assert envelope.stream_version >= 1
    assert envelope.schema_version >= 1
    assert envelope.stream_id
    envelope.metadata  # noqa: B018 -- reading it must not raise
    assert payload_problem(envelope.payload) is None
    body.decode()  # UTF-8 throughout, as every JSON reader requires


@FUZZ
@given(hostile_bodies)
@example(KNOWN_HOSTILE[0])
@example(KNOWN_HOSTILE[1])
@example(KNOWN_HOSTILE[2])
@example(KNOWN_HOSTILE[3])
def test_no_hostile_message_makes_the_reader_raise_anything_but_invalid_message(
    body: bytes,
) -> None:
    envelope = _read(body)
    if envelope is not None:
        _check_whole(envelope, body)


@FUZZ
@given(st.integers(1, 10**9))
def test_every_valid_message_is_read(amount: int) -> None:
    body = valid_body(amount)
    envelope = _read(body)

    assert envelope is not None
    _check_whole(envelope, body)
    assert msgspec.json.decode(envelope.payload) == {"amount": amount}
    assert JSONFormat().read(CloudEvent, body).get_data() == {"amount": amount}


def _at_depth(frames: int, call: Callable[[], object]) -> object:
    """``call()`` from ``frames`` Python frames down."""
    if frames <= 0:
        return call()
    return _at_depth(frames - 1, call)


@pytest.mark.parametrize("depth", [1, 64, 65, 66, 1000, 100_000])
@pytest.mark.parametrize("spare", [50, 150], ids=lambda spare: f"{spare}-frames-spare")
def test_from_any_depth_of_calls_the_reader_refuses_deep_nesting_with_invalid_message(
    depth: int, spare: int
) -> None:
    # Near the recursion limit already (a deep handler, a deep test runner), the reader
    # still gives its one error type rather than RecursionError.
    body = valid_body(1).replace(b'{"amount":1}', b"[" * depth + b"]" * depth)
    frames = sys.getrecursionlimit() - spare

    def read() -> str:
        try:
            decode_envelope(body)
        except InvalidMessage as error:
            return error.reason
        return "accepted"

    reason = _at_depth(frames, read)

    if depth > 64:
        assert "deeper than" in str(reason)
    else:
        assert reason in {"accepted", "not readable: nested too deep for this reader"}
