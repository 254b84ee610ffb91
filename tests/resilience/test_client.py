"""The service client against real HTTP servers on loopback (tests/resilience/servers.py):
round robin, failover, retries only for requests safe to repeat, deadlines, and the
breaker opening, failing fast, half-opening and closing."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventcore.errors import (
    CallTimeout,
    CircuitOpen,
    InvalidInput,
    InvalidName,
    InvalidUrl,
    ServiceUnavailable,
)
from eventcore.resilience import (
    BreakerPolicy,
    BreakerState,
    CallOutcome,
    RequestRecord,
    ServiceClient,
    StateChange,
    StaticResolver,
)
from eventcore.retry import RetryPolicy
from tests.resilience.clock import FakeClock
from tests.resilience.servers import HangUp, Instance, Received, closed_port

StartInstance = Callable[[str], Awaitable[Instance]]

#: Retries without waiting: what is tested is which requests are repeated, not the waits.
AT_ONCE = RetryPolicy(max_attempts=3, initial_delay=0.0)
ONCE = RetryPolicy(max_attempts=1)
#: A breaker that opens at the first failure.
TRIPS_AT_ONCE = BreakerPolicy(consecutive_failures=1, reset_timeout=10.0)
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def client_of(addresses: Sequence[str], **options: Any) -> ServiceClient:
    options.setdefault("retry", AT_ONCE)
    return ServiceClient(StaticResolver({"payments": list(addresses)}), **options)


def in_turn_order(*instances: Instance) -> list[Instance]:
    """The instances in the order the client takes them (it sorts their addresses)."""
    return sorted(instances, key=lambda instance: instance.url)


class Recording(httpx.AsyncHTTPTransport):
    """The real transport, noting which instance each connection attempt went to."""

    def __init__(self) -> None:
        super().__init__()
        self.tried: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.tried.append(f"http://{request.url.host}:{request.url.port}")
        return await super().handle_async_request(request)


# --- where calls go --------------------------------------------------------------------


async def test_calls_take_the_live_instances_in_turn(instances: StartInstance) -> None:
    a, b = await instances("a"), await instances("b")

    async with client_of([a.url, b.url]) as client:
        answered = [(await client.get("http://payments/orders/7")).json() for _ in range(6)]

    first, second = in_turn_order(a, b)
    names = [answer["instance"] for answer in answered]
    assert names == [first.name, second.name] * 3
    assert [r.path for r in a.received] == ["/orders/7"] * 3


async def test_a_path_with_service_given_goes_under_the_instance_s_prefix(
    instances: StartInstance,
) -> None:
    a = await instances("a")

    async with client_of([f"{a.url}/api"]) as client:
        response = await client.request(
            "GET", "/orders/7", service="payments", params={"expand": "lines"}
        )

    assert response.status_code == 200
    assert [r.path for r in a.received] == ["/api/orders/7"]
    assert response.request.url.params["expand"] == "lines"


async def test_the_path_query_headers_and_body_reach_the_instance_as_given(
    instances: StartInstance,
) -> None:
    a = await instances("a")

    async with client_of([a.url]) as client:
        response = await client.put(
            "http://payments/accounts/ada lovelace/ü?x=1&z=%2F",
            headers={"Idempotency-Key": "k-1"},
            content=b"\x00binary",
        )
        # As in httpx, params= gives the query (it replaces one in the URL).
        with_params = await client.get("http://payments/accounts", params={"y": "a b"})

    assert response.json()["path"] == "/accounts/ada lovelace/ü"
    assert response.json()["query"] == "x=1&z=%2F"
    assert with_params.json()["query"] == "y=a+b"
    assert a.received[0] == Received("PUT", "/accounts/ada lovelace/ü", b"\x00binary", "k-1")
    assert response.request.headers["host"] == a.url.removeprefix("http://")


async def test_an_idempotent_call_never_fails_while_an_instance_is_stopped(
    instances: StartInstance,
) -> None:
    a, b = await instances("a"), await instances("b")
    done = 0
    halfway = asyncio.Event()

    async with client_of([a.url, b.url]) as client:

        async def worker() -> list[int]:
            nonlocal done
            statuses = []
            for _ in range(20):
                statuses.append((await client.get("http://payments/balance")).status_code)
                done += 1
                if done == 40:
                    halfway.set()
            return statuses

        async def stop_a() -> None:
            await halfway.wait()
            await a.stop()

        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(worker()) for _ in range(4)]
            group.create_task(stop_a())

    statuses = [status for task in workers for status in task.result()]
    assert statuses == [200] * 80
    assert len(a.received) + len(b.received) >= 80
    assert len(b.received) > 40


async def test_a_post_fails_over_from_an_instance_that_refuses_the_connection(
    instances: StartInstance,
) -> None:
    b = await instances("b")
    dead = f"http://127.0.0.1:{closed_port()}"

    async with client_of([dead, b.url], retry=ONCE) as client:
        statuses = [
            (await client.post("http://payments/charges", json={"n": n})).status_code
            for n in range(4)
        ]

    assert statuses == [200] * 4
    assert [r.body for r in b.received] == [b'{"n":%d}' % n for n in range(4)]


async def test_an_instance_that_refused_is_tried_last_during_its_cooldown(
    instances: StartInstance, clock: FakeClock
) -> None:
    b = await instances("b")
    dead = f"http://127.0.0.1:{closed_port()}"
    transport = Recording()

    async with httpx.AsyncClient(transport=transport) as http:
        client = client_of([dead, b.url], http=http, clock=clock, instance_cooldown=5.0)
        for _ in range(4):
            await client.get("http://payments/balance")
        tried_during = transport.tried.count(dead)
        clock.advance(5.0)
        for _ in range(2):
            await client.get("http://payments/balance")
        tried_after = transport.tried.count(dead) - tried_during

    # Without the cooldown it would be tried on each of its two turns in four calls.
    assert tried_during == 1
    assert tried_after == 1
    assert len(b.received) == 6


async def test_no_instance_accepting_a_connection_is_service_unavailable() -> None:
    dead = [f"http://127.0.0.1:{closed_port()}" for _ in range(2)]

    async with client_of(dead) as client:
        with pytest.raises(ServiceUnavailable, match="no instance accepted a connection") as err:
            await client.get("http://payments/balance")

    assert err.value.service == "payments"
    assert all(address in err.value.reason for address in dead)
    assert isinstance(err.value.__cause__, httpx.ConnectError)


async def test_a_service_without_instances_is_service_unavailable() -> None:
    async with client_of([]) as client:
        with pytest.raises(ServiceUnavailable, match="no live instance"):
            await client.get("http://payments/balance")


async def test_a_resolver_that_fails_is_service_unavailable_with_its_cause() -> None:
    async def registry_down(service: str) -> list[str]:
        raise ConnectionError("the registry is down")

    async with ServiceClient(registry_down, retry=ONCE) as client:
        with pytest.raises(ServiceUnavailable, match="could not be looked up") as err:
            await client.get("http://payments/balance")

    assert isinstance(err.value.__cause__, ConnectionError)


async def test_instances_with_bad_addresses_are_left_out(
    instances: StartInstance, caplog: pytest.LogCaptureFixture
) -> None:
    a = await instances("a")

    async def registry(service: str) -> list[str]:
        return ["not a url", a.url]

    async with ServiceClient(registry) as client:
        with caplog.at_level(logging.WARNING):
            responses = [await client.get("http://payments/x") for _ in range(2)]

    assert [r.status_code for r in responses] == [200, 200]
    assert "not a url" in caplog.text


# --- retries ---------------------------------------------------------------------------


async def test_a_get_answered_with_a_server_error_is_tried_on_the_next_instance(
    instances: StartInstance,
) -> None:
    first, second = in_turn_order(await instances("a"), await instances("b"))
    first.status = 503

    async with client_of([first.url, second.url]) as client:
        response = await client.get("http://payments/balance")

    assert response.json()["instance"] == second.name
    assert (len(first.received), len(second.received)) == (1, 1)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_request_not_safe_to_repeat_is_sent_once(
    instances: StartInstance, method: str
) -> None:
    a = await instances("a")
    a.status = 503

    async with client_of([a.url]) as client:
        response = await client.request(method, "http://payments/charges", json={"amount": 5})

    assert response.status_code == 503
    assert len(a.received) == 1


async def test_a_post_with_an_idempotency_key_is_retried_with_the_same_key(
    instances: StartInstance,
) -> None:
    a = await instances("a")
    a.status = 503

    async with client_of([a.url]) as client:
        response = await client.post(
            "http://payments/charges", json={"amount": 5}, headers={"Idempotency-Key": "c-7"}
        )

    assert response.status_code == 503
    assert [r.idempotency_key for r in a.received] == ["c-7"] * AT_ONCE.max_attempts


@pytest.mark.parametrize("status", [200, 404, 409, 501])
async def test_a_status_outside_the_failure_statuses_is_returned_at_once(
    instances: StartInstance, status: int
) -> None:
    a = await instances("a")
    a.status = status

    async with client_of([a.url]) as client:
        response = await client.get("http://payments/orders/7")

    assert response.status_code == status
    assert len(a.received) == 1
    assert client.breaker("payments").stats().failures == 0


async def test_a_post_whose_connection_broke_after_sending_is_not_sent_again() -> None:
    hang_up = await HangUp().start()
    try:
        async with client_of([hang_up.url]) as client:
            with pytest.raises(ServiceUnavailable, match="may have taken effect") as err:
                await client.post("http://payments/charges", json={"amount": 5})
    finally:
        await hang_up.stop()

    assert hang_up.requests == 1
    assert isinstance(err.value.__cause__, httpx.TransportError)


async def test_a_get_whose_connection_broke_after_sending_is_sent_again() -> None:
    hang_up = await HangUp().start()
    try:
        async with client_of([hang_up.url]) as client:
            with pytest.raises(ServiceUnavailable, match="after the request was sent") as err:
                await client.get("http://payments/balance")
    finally:
        await hang_up.stop()

    assert hang_up.requests == AT_ONCE.max_attempts
    assert "may have taken effect" not in err.value.reason


# --- time ------------------------------------------------------------------------------


async def test_a_call_past_its_timeout_is_call_timeout_and_counts_as_a_failure(
    instances: StartInstance,
) -> None:
    a = await instances("a")
    a.hang = True
    records: list[RequestRecord] = []

    async with client_of([a.url]) as client:
        client.add_request_observer(records.append)
        with pytest.raises(CallTimeout) as timed_out:
            await client.get("http://payments/balance", timeout=0.2)

    assert isinstance(timed_out.value, TimeoutError)
    assert (timed_out.value.target, timed_out.value.seconds) == ("payments", 0.2)
    assert client.breaker("payments").stats().failures == 1
    assert len(a.received) == 1
    assert [r.outcome for r in records] == [CallOutcome.TIMEOUT]


async def test_the_client_timeout_applies_to_each_call_unless_it_gives_its_own(
    instances: StartInstance,
) -> None:
    a = await instances("a")
    a.hang = True

    async with client_of([a.url], timeout=0.1) as client:
        with pytest.raises(CallTimeout) as timed_out:
            await client.get("http://payments/balance")

    assert timed_out.value.seconds == 0.1


async def test_an_attempt_past_the_breaker_s_call_timeout_is_retried_elsewhere(
    instances: StartInstance,
) -> None:
    first, second = in_turn_order(await instances("a"), await instances("b"))
    first.hang = True

    async with client_of(
        [first.url, second.url], breaker_policy=BreakerPolicy(call_timeout=0.2)
    ) as client:
        response = await client.get("http://payments/balance", timeout=30.0)

    assert response.json()["instance"] == second.name
    assert client.breaker("payments").stats().failures == 1


async def test_a_post_past_the_breaker_s_call_timeout_is_not_retried(
    instances: StartInstance,
) -> None:
    first, second = in_turn_order(await instances("a"), await instances("b"))
    first.hang = True

    async with client_of(
        [first.url, second.url], breaker_policy=BreakerPolicy(call_timeout=0.2)
    ) as client:
        with pytest.raises(CallTimeout) as timed_out:
            await client.post("http://payments/charges", timeout=30.0)

    assert timed_out.value.seconds == 0.2
    assert (len(first.received), len(second.received)) == (1, 0)


# --- the breaker -----------------------------------------------------------------------


async def test_the_breaker_opens_fails_fast_half_opens_and_closes(
    instances: StartInstance, clock: FakeClock
) -> None:
    a = await instances("a")
    a.status = 503
    heard: list[StateChange] = []
    policy = BreakerPolicy(consecutive_failures=3, reset_timeout=10.0)

    async with client_of([a.url], retry=ONCE, breaker_policy=policy, clock=clock) as client:
        client.add_state_listener(heard.append)
        statuses = [(await client.get("http://payments/balance")).status_code for _ in range(3)]
        assert client.breaker("payments").state is OPEN

        with pytest.raises(CircuitOpen) as refused:
            await client.get("http://payments/balance")
        assert refused.value.retry_after == pytest.approx(10.0)
        assert len(a.received) == 3  # nothing was sent

        clock.advance(10.0)  # half-open: one probe, still failing, opens it again
        assert (await client.get("http://payments/balance")).status_code == 503
        assert client.breaker("payments").state is OPEN

        clock.advance(10.0)
        a.status = 200
        assert (await client.get("http://payments/balance")).status_code == 200

    assert statuses == [503] * 3
    assert client.breaker("payments").state is CLOSED
    assert [(c.old, c.new) for c in heard] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


async def hanging_probe(
    client: ServiceClient, instance: Instance, clock: FakeClock
) -> asyncio.Task[httpx.Response]:
    """Open the circuit (``TRIPS_AT_ONCE``) with a 503, let the reset timeout pass, and
    start a probe that the instance holds."""
    instance.status = 503
    await client.get("http://payments/balance")
    clock.advance(TRIPS_AT_ONCE.reset_timeout)
    instance.status, instance.hang = 200, True
    probe = asyncio.create_task(client.get("http://payments/balance"))
    await instance.hanging()
    return probe


async def test_half_open_sends_one_probe_and_fails_the_others_fast(
    instances: StartInstance, clock: FakeClock
) -> None:
    a = await instances("a")

    async with client_of([a.url], retry=ONCE, breaker_policy=TRIPS_AT_ONCE, clock=clock) as client:
        probe = await hanging_probe(client, a, clock)
        with pytest.raises(CircuitOpen) as refused:
            await client.get("http://payments/balance")
        a.release()
        response = await probe

    assert refused.value.state == "half-open"
    assert response.status_code == 200
    assert client.breaker("payments").state is CLOSED
    assert len(a.received) == 2


async def test_each_service_has_its_own_breaker(instances: StartInstance, clock: FakeClock) -> None:
    a, b = await instances("a"), await instances("b")
    a.status = 503
    resolver = StaticResolver({"payments": [a.url], "shipping": [b.url]})
    policy = BreakerPolicy(consecutive_failures=1)

    async with ServiceClient(resolver, retry=ONCE, breaker_policy=policy, clock=clock) as client:
        await client.get("http://payments/balance")
        with pytest.raises(CircuitOpen):
            await client.get("http://payments/balance")
        response = await client.get("http://shipping/parcels")

    assert response.status_code == 200
    assert set(client.breakers) == {"payments", "shipping"}
    assert client.breakers["shipping"].state is CLOSED


# --- observers -------------------------------------------------------------------------


async def test_each_call_ends_with_one_record_of_its_outcome(
    instances: StartInstance, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a = await instances("a")
    records: list[RequestRecord] = []

    def broken(record: RequestRecord) -> None:
        raise ValueError("the metrics hook is broken")

    policy = BreakerPolicy(consecutive_failures=3)
    async with client_of([a.url], breaker_policy=policy, clock=clock) as client:
        client.add_request_observer(broken)
        client.add_request_observer(records.append)
        await client.post("http://payments/charges")
        a.status = 503
        await client.get("http://payments/balance")  # three attempts: the circuit opens
        with pytest.raises(CircuitOpen):
            await client.get("http://payments/balance")
    async with client_of([]) as empty:
        empty.add_request_observer(records.append)
        with pytest.raises(ServiceUnavailable):
            await empty.get("http://payments/balance")

    assert [(r.method, r.outcome, r.status, r.attempts) for r in records] == [
        ("POST", CallOutcome.SUCCESS, 200, 1),
        ("GET", CallOutcome.SERVER_ERROR, 503, 3),
        ("GET", CallOutcome.CIRCUIT_OPEN, None, 0),
        ("GET", CallOutcome.UNAVAILABLE, None, 3),  # looked up again: a GET is safe
    ]
    assert {r.target for r in records} == {"payments"}
    assert [r.instance for r in records] == [a.url, a.url, None, None]
    assert all(r.duration >= 0 for r in records)
    assert "the metrics hook is broken" in caplog.text


async def test_a_cancelled_call_is_recorded_and_gives_its_probe_slot_back(
    instances: StartInstance, clock: FakeClock
) -> None:
    a = await instances("a")
    records: list[RequestRecord] = []

    async with client_of([a.url], retry=ONCE, breaker_policy=TRIPS_AT_ONCE, clock=clock) as client:
        client.add_request_observer(records.append)
        probe = await hanging_probe(client, a, clock)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        a.hang = False
        response = await client.get("http://payments/balance")

    assert response.status_code == 200
    assert [r.outcome for r in records] == [
        CallOutcome.SERVER_ERROR,
        CallOutcome.CANCELLED,
        CallOutcome.SUCCESS,
    ]


# --- what the client refuses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ({"method": "GET", "url": "payments/x"}, InvalidUrl),
        ({"method": "GET", "url": "http://payments:8000/x"}, InvalidUrl),
        ({"method": "GE T", "url": "http://payments/x"}, InvalidInput),
        ({"method": "GET", "url": "/x", "service": "pay ments"}, InvalidName),
        ({"method": "GET", "url": "http://payments/x", "timeout": 0}, InvalidInput),
        ({"method": "GET", "url": "http://payments/x", "timeout": float("nan")}, InvalidInput),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    instances: StartInstance, call: dict[str, Any], error: type[Exception]
) -> None:
    a = await instances("a")

    async with client_of([a.url]) as client:
        with pytest.raises(error):
            await client.request(**call)

    assert a.received == []


@pytest.mark.parametrize(
    "body", [{"json": {"when": object()}}, {"json": float("nan")}, {"content": 7}]
)
async def test_a_body_that_cannot_be_sent_is_refused_before_the_breaker_sees_it(
    instances: StartInstance, body: dict[str, Any]
) -> None:
    a = await instances("a")

    async with client_of([a.url]) as client:
        with pytest.raises(InvalidInput, match="cannot be built"):
            await client.post("http://payments/charges", **body)

    assert a.received == []
    assert "payments" not in client.breakers


@pytest.mark.parametrize(
    "options", [{"timeout": 0}, {"timeout": float("inf")}, {"instance_cooldown": -1}]
)
def test_a_client_with_settings_that_make_no_sense_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        client_of([], **options)


async def test_a_closed_client_refuses_calls_and_leaves_a_given_http_client_open() -> None:
    async with httpx.AsyncClient() as http:
        client = client_of([], http=http)
        await client.aclose()
        await client.aclose()

        with pytest.raises(RuntimeError, match="closed"):
            await client.get("http://payments/balance")
        assert not http.is_closed


def test_the_breaker_works_without_httpx_and_the_client_names_the_extra() -> None:
    script = """
import asyncio, sys
sys.modules["httpx"] = None  # as if it were not installed
import eventcore.resilience as resilience
from eventcore.errors import MissingDependency

async def main():
    breaker = resilience.CircuitBreaker("payments")
    async def ok():
        return 1
    assert await breaker.call(ok) == 1

asyncio.run(main())
try:
    resilience.ServiceClient
except MissingDependency as error:
    print(error)
"""
    src = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "pip install 'eventcore[runtime]'" in result.stdout
