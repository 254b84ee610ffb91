"""A saga definition is checked when it is declared; a start is checked when it is made."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from eventcore.errors import InvalidInput, InvalidSaga, InvalidSagaInput
from eventcore.events import Event
from eventcore.saga import (
    DEFAULT_TIMEOUT,
    Call,
    Local,
    Saga,
    SagaCompleted,
    SagaContext,
    Send,
    StartOn,
    Step,
    decide,
    evolve,
    idempotency_key,
)
from tests.saga.order import ORDER, Order, Reserved, ReserveStock, order_saga


def reserve_stock(context: SagaContext[Order]) -> ReserveStock:
    return ReserveStock(order_id=context.data.order_id, items=context.data.items)


def step(name: str = "reserve", **options: Any) -> Step[Order, Reserved]:
    settings: dict[str, Any] = {
        "action": Send("inventory", reserve_stock),
        "compensation": Send("inventory", reserve_stock),
        "result": Reserved,
        **options,
    }
    return Step(name, **settings)


@pytest.mark.parametrize(
    ("steps", "options", "reason"),
    [
        ([], {}, "it has no steps"),
        ([step("a"), step("a")], {}, "two steps are called 'a'"),
        ([step("a", compensation=None), step("b")], {}, "step 'a' has no compensation"),
        (
            [step("a", compensation=None, compensate_late_success=True)],
            {},
            "compensates a late success, but has no compensation",
        ),
        ([step("a", timeout=0)], {}, "step 'a''s timeout must be a positive number"),
        ([step("a", timeout=float("nan"))], {}, "timeout must be a positive number"),
        ([step("a", timeout=-1.0)], {}, "timeout must be a positive number"),
        ([step("a", timeout=None)], {}, "timeout must be a positive number"),
        ([step("a", compensation_timeout=float("inf"))], {}, "compensation timeout must be"),
        ([step("a")], {"deadline": 0}, "the saga's deadline must be a positive number"),
        ([step("a")], {"deadline": True}, "the saga's deadline must be a positive number"),
        ([step("")], {}, "a step's name must be non-empty"),
        ([step("a\nb")], {}, "must not contain control characters"),
        ([step("a", action="send it")], {}, "step 'a''s action is 'send it'"),
        ([step("a", action=Send("", reserve_stock))], {}, "sends to a service whose name"),
        ([step("a", action=Local(42))], {}, "builder that is not callable"),  # type: ignore[arg-type]
        ([step("a", action=Call(42))], {}, "calls something that is not callable"),  # type: ignore[arg-type]
        ([step("a", result="Reserved")], {}, "result must be a type"),
        (["a"], {}, "step 1 is 'a', not a Step"),
        ([step("a")], {"compensation_retry": 3}, "compensation_retry must be a RetryPolicy"),
        ([step("a")], {"start_on": ["OrderPlaced"]}, "is not a StartOn of an Event type"),
    ],
)
def test_a_definition_that_cannot_run_is_refused_when_declared(
    steps: list[Any], options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidSaga, match="saga 'order' is not a valid definition") as raised:
        Saga("order", data=Order, steps=steps, **options)

    assert reason in raised.value.reason
    assert raised.value.saga == "order"


def test_a_saga_name_that_cannot_name_a_saga_is_refused() -> None:
    with pytest.raises(InvalidSaga, match="its name must be non-empty"):
        Saga(" order", data=Order, steps=[step()])


def test_only_the_last_step_may_go_without_a_compensation() -> None:
    saga = Saga("order", data=Order, steps=[step("a"), step("b", compensation=None)])

    assert [planned.name for planned in saga.steps] == ["a", "b"]


def test_a_step_waits_the_default_timeout_and_its_compensation_the_step_s() -> None:
    assert step().timeout == DEFAULT_TIMEOUT
    assert step(timeout=3.0).compensation_timeout == 3.0
    assert step(timeout=3.0, compensation_timeout=9.0).compensation_timeout == 9.0


@pytest.mark.parametrize(
    ("saga_id", "data", "reason"),
    [
        ("", ORDER, "the saga id must be non-empty"),
        ("x" * 201, ORDER, "the saga id must be at most 200 characters"),
        ("o\x00", ORDER, "must not contain control characters"),
        ("o-1", {"order_id": "o-1"}, "the start data must be a Order, not dict"),
    ],
)
def test_a_start_with_a_bad_id_or_data_is_refused(saga_id: str, data: Any, reason: str) -> None:
    with pytest.raises(InvalidSagaInput, match=reason):
        order_saga().start(saga_id, data)


def test_start_data_that_cannot_be_stored_is_refused() -> None:
    class Odd(msgspec.Struct):
        value: object

    saga: Saga[Any] = Saga("odd", data=Odd, steps=[step()])

    with pytest.raises(InvalidSagaInput, match="the start data cannot be stored"):
        saga.start("o-1", Odd(value=object()))


def test_a_start_of_another_saga_type_is_refused() -> None:
    other = Saga("refund", data=Order, steps=[step()])

    with pytest.raises(InvalidSagaInput, match="a start of 'refund' was given to it"):
        decide(order_saga(), None, other.start("o-1", ORDER), 0.0)


class OrderPlaced(Event):
    order_id: str
    amount: int


class OrderShipped(Event):
    order_id: str


def test_a_saga_starts_from_the_event_it_subscribes_to_with_the_id_it_names() -> None:
    saga = Saga(
        "order",
        data=Order,
        steps=[step()],
        start_on=[
            StartOn(
                OrderPlaced,
                saga_id=lambda event: f"order-{event.order_id}",
                data=lambda event: Order(order_id=event.order_id, amount=event.amount, items=()),
            )
        ],
    )

    start = saga.start_from(OrderPlaced(order_id="7", amount=10))

    assert start is not None
    assert (start.saga_id, start.data) == ("order-7", {"order_id": "7", "amount": 10, "items": []})
    assert saga.start_from(OrderShipped(order_id="7")) is None


def test_idempotency_keys_are_stable_and_name_one_request_each() -> None:
    key = idempotency_key("order", "o-1", "charge", "action")
    others = {
        idempotency_key("order", "o-2", "charge", "action"),
        idempotency_key("order", "o-1", "reserve", "action"),
        idempotency_key("order", "o-1", "charge", "compensation"),
        idempotency_key("refund", "o-1", "charge", "action"),
        # The separator keeps fields apart: no shift of text between them collides.
        idempotency_key("order", "o-1c", "harge", "action"),
    }

    assert key == idempotency_key("order", "o-1", "charge", "action")
    assert uuid.UUID(key).version == 5
    assert str(uuid.UUID(key)) == key
    assert key not in others
    assert len(others) == 5


def test_a_stream_that_is_not_a_saga_s_is_refused_by_the_fold() -> None:
    with pytest.raises(InvalidInput, match="starts with SagaStarted"):
        evolve(None, SagaCompleted(at=0.0))
