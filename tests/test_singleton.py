"""``Singleton``: one leader at a time over the memory leases; a clean stop hands over at
once, a lost lease stops the worker before the claim could run out, a failing worker
fails the singleton (and frees the lease). The same over real processes, killed:
``tests/projection/test_leadership.py``."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from eventcore.errors import InvalidInput, StoreUnavailable, WorkerStopped
from eventcore.instrumentation import Hooks, LeadershipChanged
from eventcore.leases import ClaimHolders, Leases, MemoryLeases
from eventcore.lifecycle import Readiness
from eventcore.singleton import FOLLOWER, LEADER, STOPPED, Singleton

#: A guard against hanging, not a speed requirement.
PATIENCE = 20.0
#: Short, so takeovers after a lease runs out come quickly.
TTL = 0.4


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            # The singletons' roles have no event to wait on; polling them is the point.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"never: {what}")


class Journal:
    """What the inner workers did, in order, and how many ran at once at most."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.running = 0
        self.most = 0


class Work:
    """An inner worker: runs until stopped (or fails when told), noting it in a journal.
    ``stubborn`` ignores ``stop()`` (only a cancel ends it)."""

    def __init__(self, name: str, journal: Journal, *, stubborn: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.stubborn = stubborn
        self.stopping = asyncio.Event()
        self.failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self.readiness = Readiness(name)
        self.stopped_at: float | None = None

    async def run(self) -> None:
        journal = self.journal
        journal.running += 1
        journal.most = max(journal.most, journal.running)
        journal.entries.append(f"{self.name} started")
        try:
            self.readiness.set()
            waiting = asyncio.ensure_future(asyncio.Event().wait() if self.stubborn else
                                            self.stopping.wait())  # fmt: skip
            watched: set[asyncio.Future[Any]] = {waiting, self.failure}
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if self.failure in done:
                raise self.failure.result()
        finally:
            journal.running -= 1
            journal.entries.append(f"{self.name} ended")

    def stop(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self.stopping.set()

    def status(self) -> str:
        return f"{self.name} working"

    async def ready(self) -> None:
        await self.readiness.wait()


class Instance:
    """One service instance's singleton, with the workers it built."""

    def __init__(
        self,
        member: str,
        leases: Leases,
        journal: Journal,
        *,
        name: str = "totals",
        **options: object,
    ) -> None:
        self.built: list[Work] = []
        self.stubborn = False

        def make() -> Work:
            work = Work(f"{member}#{len(self.built) + 1}", journal, stubborn=self.stubborn)
            self.built.append(work)
            return work

        self.singleton: Singleton[str] = Singleton(
            name,
            leases,
            make,
            ttl=TTL,
            member=member,
            **options,  # type: ignore[arg-type]
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.singleton.run())

    @property
    def role(self) -> str:
        return self.singleton.status().role

    async def finish(self) -> None:
        self.singleton.stop()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class Recorder(Hooks):
    def __init__(self) -> None:
        self.changes: list[LeadershipChanged] = []

    def leadership_changed(self, event: LeadershipChanged) -> None:
        self.changes.append(event)


class Faulty:
    """Memory leases whose renewals of one member can be made to fail or be refused."""

    def __init__(self, leases: MemoryLeases) -> None:
        self.leases = leases
        self.calls: dict[str, int] = {}
        self.outage: str | None = None
        self.refuse: str | None = None

    async def heartbeat(self, scope: str, member: str, ttl: float) -> list[str]:
        return await self.leases.heartbeat(scope, member, ttl)

    async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
        self.calls[member] = self.calls.get(member, 0) + 1
        if member == self.outage:
            raise StoreUnavailable("the lease store is away")
        if member == self.refuse:
            return False
        return await self.leases.acquire(scope, partition, member, ttl)

    async def release(self, scope: str, partition: int, member: str) -> None:
        await self.leases.release(scope, partition, member)

    async def leave(self, scope: str, member: str) -> None:
        await self.leases.leave(scope, member)


async def test_one_instance_leads_and_the_other_follows_knowing_who_leads() -> None:
    leases, journal = MemoryLeases(), Journal()
    a, b = Instance("a", leases, journal), Instance("b", leases, journal)
    try:
        a.start()
        await a.singleton.ready()
        b.start()
        await b.singleton.ready()

        assert (a.role, b.role) == (LEADER, FOLLOWER)
        status = b.singleton.status()
        assert (status.holder, status.terms, status.worker) == ("a", 0, None)
        leading = a.singleton.status()
        assert (leading.holder, leading.terms, leading.worker) == ("a", 1, "a#1 working")
        assert journal.entries == ["a#1 started"]
    finally:
        await a.finish()
        await b.finish()
    assert journal.most == 1


async def test_a_clean_stop_releases_the_lease_and_the_follower_takes_over() -> None:
    leases, journal, seen = MemoryLeases(), Journal(), Recorder()
    a, b = Instance("a", leases, journal, hooks=seen), Instance("b", leases, journal, hooks=seen)
    try:
        a.start()
        await a.singleton.ready()
        b.start()
        await b.singleton.ready()

        await a.finish()
        await until(lambda: b.role == LEADER, "b leads")

        assert a.role == STOPPED
        assert journal.entries == ["a#1 started", "a#1 ended", "b#1 started"]
        assert [(c.member, c.leader, c.reason) for c in seen.changes] == [
            ("a", True, "acquired"),
            ("a", False, "released"),
            ("b", True, "acquired"),
        ]
    finally:
        await b.finish()
    assert journal.most == 1
    assert await leases.holder("singleton.totals", 0) is None


async def test_a_leader_that_cannot_renew_stops_its_worker_before_the_lease_runs_out() -> None:
    memory, journal, seen = MemoryLeases(), Journal(), Recorder()
    faulty = Faulty(memory)
    a = Instance("a", faulty, journal, hooks=seen)
    try:
        a.start()
        await a.singleton.ready()
        faulty.outage = "a"
        await until(lambda: a.role == FOLLOWER, "a follows")

        work = a.built[0]
        assert work.stopped_at is not None
        expires = memory._claims[("singleton.totals", 0)][1]
        # The safety margin: stopped with a third of the ttl to spare, at worst (the
        # renewal before the outage counted from before it was sent).
        assert work.stopped_at < expires
        assert journal.entries == ["a#1 started", "a#1 ended"]
        assert seen.changes[-1].reason == "expired"
        assert isinstance(a.singleton.status().last_error, str)

        faulty.outage = None
        await until(lambda: a.role == LEADER, "a leads again")
        assert a.singleton.status().terms == 2
    finally:
        await a.finish()


async def test_a_leader_whose_claim_is_taken_stops_and_follows() -> None:
    memory, journal, seen = MemoryLeases(), Journal(), Recorder()
    faulty = Faulty(memory)
    a = Instance("a", faulty, journal, hooks=seen)
    try:
        a.start()
        await a.singleton.ready()
        faulty.refuse = "a"
        await until(lambda: a.role == FOLLOWER, "a follows")

        assert seen.changes[-1].reason == "taken"
        assert journal.entries == ["a#1 started", "a#1 ended"]
    finally:
        await a.finish()


async def test_a_worker_that_ignores_stop_is_cancelled_once_the_lease_is_lost() -> None:
    memory, journal = MemoryLeases(), Journal()
    faulty = Faulty(memory)
    a = Instance("a", faulty, journal)
    a.stubborn = True
    try:
        a.start()
        await a.singleton.ready()
        faulty.refuse = "a"
        await until(lambda: a.role == FOLLOWER, "a follows")

        assert journal.entries == ["a#1 started", "a#1 ended"]
        assert journal.running == 0
    finally:
        await a.finish()


async def test_a_failing_worker_fails_the_singleton_and_frees_the_lease() -> None:
    leases, journal = MemoryLeases(), Journal()
    a, b = Instance("a", leases, journal), Instance("b", leases, journal)
    try:
        a.start()
        await a.singleton.ready()
        b.start()
        await b.singleton.ready()

        a.built[0].failure.set_result(RuntimeError("a bug in the handler"))
        assert a.task is not None
        with pytest.raises(RuntimeError, match="a bug in the handler"):
            await a.task
        await until(lambda: b.role == LEADER, "b leads")
    finally:
        await a.finish()
        await b.finish()
    assert journal.most == 1


async def test_an_outage_before_the_first_answer_leaves_it_not_ready() -> None:
    memory, journal = MemoryLeases(), Journal()
    faulty = Faulty(memory)
    faulty.outage = "a"
    a = Instance("a", faulty, journal)
    a.start()
    await until(lambda: faulty.calls.get("a", 0) >= 2, "a asked twice")
    ready = asyncio.ensure_future(a.singleton.ready())
    await asyncio.sleep(0)
    assert not ready.done()
    faulty.outage = None
    async with asyncio.timeout(PATIENCE):
        await ready
    assert a.role == LEADER
    await a.finish()


async def test_cancelling_the_singleton_cancels_its_worker() -> None:
    leases, journal = MemoryLeases(), Journal()
    a = Instance("a", leases, journal)
    a.start()
    await a.singleton.ready()
    assert a.task is not None
    a.task.cancel()
    await asyncio.gather(a.task, return_exceptions=True)
    assert journal.entries == ["a#1 started", "a#1 ended"]


async def test_stopped_before_it_runs_it_returns_at_once_and_is_never_ready() -> None:
    leases, journal = MemoryLeases(), Journal()
    a = Instance("a", leases, journal)
    a.singleton.stop()
    await a.singleton.run()
    with pytest.raises(WorkerStopped):
        await a.singleton.ready()
    assert a.built == []
    assert a.role == STOPPED


async def test_a_worker_that_ends_by_itself_ends_the_singleton() -> None:
    leases, journal = MemoryLeases(), Journal()
    a = Instance("a", leases, journal)
    a.start()
    await a.singleton.ready()
    a.built[0].stopping.set()  # its work is done: run returns without stop()
    assert a.task is not None
    await a.task
    assert a.role == STOPPED
    assert await leases.holder("singleton.totals", 0) is None


@pytest.mark.parametrize("name", ["", "  ", "a\nb", "a\x00", 7, None, "x" * 201])
def test_a_bad_name_is_refused(name: object) -> None:
    with pytest.raises(InvalidInput):
        Singleton(name, MemoryLeases(), lambda: None)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize("name", ["shop/projection:order summary", "a..b", "é*>"])
async def test_any_printable_name_gets_a_scope_a_kv_key_can_hold(name: str) -> None:
    leases, journal = MemoryLeases(), Journal()
    a = Instance("a", leases, journal, name=name)
    a.start()
    await a.singleton.ready()
    (scope, _), *_ = leases._claims
    assert re.fullmatch(r"singleton\.=[A-Za-z0-9_-]+", scope), scope
    await a.finish()


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "1"])
def test_a_bad_ttl_is_refused(ttl: object) -> None:
    with pytest.raises(InvalidInput):
        Singleton("ok", MemoryLeases(), lambda: None, ttl=ttl)  # type: ignore[arg-type, return-value]


def test_every_lease_backend_can_say_who_holds_a_claim() -> None:
    from eventcore.leases.nats import KvLeases
    from eventcore.leases.sqlite import SqliteLeases

    for backend in (MemoryLeases, SqliteLeases, KvLeases):
        assert issubclass(backend, ClaimHolders), backend


async def test_stopped_while_asking_for_the_lease_it_gives_back_a_claim_it_may_have_won() -> None:
    memory = MemoryLeases()

    class Slow(Faulty):
        async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
            await self.leases.acquire(scope, partition, member, ttl)
            await asyncio.Event().wait()  # the answer never comes back
            return True

    slow = Slow(memory)
    a = Instance("a", slow, Journal())
    a.start()
    await until(lambda: bool(memory._claims), "a's claim is written")
    await a.finish()

    assert await memory.holder("singleton.totals", 0) is None
    assert a.built == []


async def test_every_bus_shares_its_leases_and_a_bus_that_keeps_none_is_refused() -> None:
    from eventcore.messaging import bus_leases, open_bus
    from eventcore.testing.faults import FaultPlan, FaultyBus

    async with await open_bus("memory://") as bus:
        assert isinstance(bus_leases(bus), MemoryLeases)
        assert bus_leases(FaultyBus(bus, FaultPlan(seed=1))) is bus_leases(bus)

    class Bare:
        url = "memory://"

    with pytest.raises(InvalidInput, match="keeps no leases"):
        bus_leases(Bare())  # type: ignore[arg-type]


async def test_a_worker_failing_on_waking_from_a_freeze_past_the_lease_is_a_lost_lease() -> None:
    # A frozen process thaws; its worker's first write is refused as stale (the target's
    # fence: CheckpointMoved) before the watch has seen the lease's time run out. That
    # is a lost lease, not a failure: the instance follows again.
    memory, journal, seen = MemoryLeases(), Journal(), Recorder()

    class Remote(Faulty):
        # A lease store a round trip away: the worker's refusal comes back first.
        async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
            await asyncio.sleep(0.05)
            return await self.leases.acquire(scope, partition, member, ttl)

    a = Instance("a", Remote(memory), journal, hooks=seen)
    a.start()
    await a.singleton.ready()
    work = a.built[0]

    # The freeze: nothing on this loop runs, renewals included; meanwhile (awaits that
    # never suspend, so still frozen) the lease runs out and another instance takes it.
    time.sleep(TTL)  # noqa: ASYNC251
    assert await memory.acquire("singleton.totals", 0, "b", 60.0)
    work.failure.set_result(RuntimeError("stale: refused by the target"))
    await until(lambda: a.role == FOLLOWER or a.task is None or a.task.done(), "a steps down")

    assert a.task is not None
    assert not a.task.done(), a.task
    assert seen.changes[-1].reason in ("expired", "taken")
    assert a.singleton.status().holder in ("b", None)
    await a.finish()
