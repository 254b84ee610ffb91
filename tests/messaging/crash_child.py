"""The processes the crash test kills, and the two small services they belong to.

    python -m tests.messaging.crash_child relay STORE_A_URL BUS_URL
    python -m tests.messaging.crash_child consumer STORE_B_URL BUS_URL

* ``relay``: service A's outbox relay, store A → bus (topic ``deposits``).
* ``consumer``: service B's subscriber, bus → a command on store B that records each
  deposit once, as ``Applied(event_id, amount)`` on stream ``applied-<account>``, run
  with the inbox key so a redelivered deposit writes nothing.

Each prints ``ready`` once it is about to work, then runs until SIGTERM (which stops it
cleanly, exit code 0) or SIGKILL (the point of the test).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from eventcore import Command, Event, EventRegistry, Executor, StreamId, Writes, open_store
from eventcore.messaging import Bus, TopicMap, open_bus
from eventcore.messaging.inbox import Received
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Subscriber

SERVICE_A = "bank-a"
GROUP_B = "ledger-b"
#: A fixed member name, as a service instance restarted in place has: the restarted
#: consumer takes its partitions back at once instead of waiting for its dead
#: predecessor's leases to expire.
MEMBER_B = "ledger-b-1"
TOPIC = "deposits"
#: Short enough that deliveries a killed consumer left unacknowledged on a bus that
#: tracks them by time (NATS) come again within seconds.
ACK_WAIT = 5.0
#: Deliveries before a message is parked as a dead letter. Every kill of the consumer
#: costs the batch in hand one delivery; the test expects no dead letter at all.
MAX_DELIVERIES = 12


class Deposited(Event):
    """Service A's fact, published."""

    account: str
    amount: int


class Applied(Event):
    """Service B's record of one deposit of A, by A's event id."""

    event_id: str
    account: str
    amount: int


registry_a = EventRegistry([Deposited])
registry_b = EventRegistry([Deposited, Applied])
TOPICS_A = TopicMap({Deposited: TOPIC})


def applied_stream(account: str) -> StreamId:
    return StreamId(f"applied-{account}")


class ApplyDeposit(Command[None]):
    """Record one deposit of A in B's ledger."""

    ledger: StreamId
    event_id: str
    account: str
    amount: int

    def initial_state(self) -> None:
        return None

    def apply(self, state: None, stream_id: StreamId, event: Event) -> None:
        return None

    def handle(self, state: None) -> Writes:
        return {
            self.ledger: [Applied(event_id=self.event_id, account=self.account, amount=self.amount)]
        }


async def open_test_bus(url: str) -> Bus:
    return await open_bus(url)


async def run_relay(store_url: str, bus_url: str) -> None:
    store = await open_store(store_url, create=False)
    bus = await open_test_bus(bus_url)
    try:
        relay = Relay(store, bus, TOPICS_A, service=SERVICE_A, batch_size=200, window=1000)
        _stop_on_sigterm(relay.stop)
        print("ready", flush=True)
        await relay.run()
    finally:
        await bus.aclose()
        await store.aclose()


async def run_consumer(store_url: str, bus_url: str) -> None:
    store = await open_store(store_url)
    bus = await open_test_bus(bus_url)
    executor = Executor(store, registry_b)

    async def record(received: Received) -> None:
        deposit = received.event
        assert isinstance(deposit, Deposited)
        command = ApplyDeposit(
            ledger=applied_stream(deposit.account),
            event_id=received.envelope.id,
            account=deposit.account,
            amount=deposit.amount,
        )
        await received.run(executor, command)

    try:
        subscriber = Subscriber(
            bus,
            TOPIC,
            {Deposited: record},
            group=GROUP_B,
            registry=registry_b,
            member=MEMBER_B,
            ack_wait=ACK_WAIT,
            max_deliveries=MAX_DELIVERIES,
            retry_backoff=(0.01, 0.1),
        )
        _stop_on_sigterm(subscriber.stop)
        print("ready", flush=True)
        await subscriber.run()
    finally:
        await bus.aclose()
        await store.aclose()


def _stop_on_sigterm(stop: Callable[[], None]) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)


if __name__ == "__main__":
    role, store_url, bus_url = sys.argv[1:4]
    roles = {"relay": run_relay, "consumer": run_consumer}
    asyncio.run(roles[role](store_url, bus_url))
