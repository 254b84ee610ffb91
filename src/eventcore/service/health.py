"""What a running service reports about itself: ``readiness`` (named checks, each
passed or failed with the reason) and ``status`` (what every worker has done).

Each check is bounded by ``CHECK_TIMEOUT``: a probe that hangs on a dead server would
be as bad as no probe. Nothing here shows a URL, only the backend's scheme, so that a
password in a store or bus URL cannot leak through a health or status body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Literal

import msgspec

from eventcore.service.service import Service, ServiceState
from eventcore.service.supervisor import WorkerHealth

__all__ = ["CHECK_TIMEOUT", "Check", "Readiness", "ServiceStatus", "readiness", "status"]

#: Seconds a reachability check may take before it counts as failed.
CHECK_TIMEOUT = 2.0


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ok: bool
    detail: str = ""


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """``status``: ``ready`` when every check passed, ``draining`` while the service
    stops, ``not_ready`` otherwise."""

    service: str
    instance: str
    status: Literal["ready", "not_ready", "draining"]
    checks: tuple[Check, ...]


class ServiceStatus(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    instance: str
    version: str
    state: ServiceState
    uptime_seconds: float
    in_flight: int
    store: str
    bus: str | None
    commands: tuple[str, ...]
    workers: tuple[WorkerHealth, ...]
    dead_letters: int | None
    #: How this instance stands in the service registry (empty when it registers nowhere).
    registrations: tuple[Any, ...] = ()


async def _reachable(name: str, probe: Awaitable[Any]) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe
    except TimeoutError:
        return Check(name=name, ok=False, detail=f"no answer within {CHECK_TIMEOUT}s")
    except Exception as error:
        # Any failure is the answer; its name only, since a message may hold a URL.
        return Check(name=name, ok=False, detail=type(error).__name__)
    return Check(name=name, ok=True)


async def readiness(service: Service) -> Readiness:
    """Run every check: store and bus reachable, each worker ready, lags under the
    service's thresholds, intake open."""
    checks: list[Check] = []
    if service.state in ("declared", "stopped"):
        checks.append(Check(name="started", ok=False, detail=service.state))
    else:
        checks.append(await _reachable("store", service.store.last_position()))
        bus = service.bus
        if bus is not None:
            checks.append(await _reachable("bus", bus.load_checkpoint(f"{service.name}.health")))
        for worker in service.workers():
            detail: str = worker.state
            if worker.restarts:
                detail += f" after {worker.restarts} restarts ({worker.last_error})"
            checks.append(Check(name=f"worker:{worker.name}", ok=worker.ready, detail=detail))
            lag = getattr(worker.status, "lag_events", None)
            if isinstance(lag, int):
                limit = (
                    service.max_relay_lag if worker.kind == "relay" else service.max_projection_lag
                )
                checks.append(
                    Check(
                        name=f"lag:{worker.name}",
                        ok=lag <= limit,
                        detail=f"{lag} events behind (limit {limit})",
                    )
                )
    draining = not service.intake.is_open
    checks.append(Check(name="intake", ok=not draining, detail="draining" if draining else "open"))
    state: Literal["ready", "not_ready", "draining"] = (
        "draining" if draining else ("ready" if all(c.ok for c in checks) else "not_ready")
    )
    return Readiness(
        service=service.name, instance=service.instance, status=state, checks=tuple(checks)
    )


def _scheme(part: object) -> str:
    url = getattr(part, "url", None)
    if isinstance(url, str):
        return url.partition("://")[0] or type(part).__name__
    return type(part).__name__


async def status(service: Service) -> ServiceStatus:
    bus = service.bus
    letters: int | None = None
    if bus is not None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                letters = await bus.dead_letters.count()
        except Exception:
            # Status shows what it can; the bus check in readiness reports the failure.
            letters = None
    started = service.started_at
    return ServiceStatus(
        service=service.name,
        instance=service.instance,
        version=service.version,
        state=service.state,
        uptime_seconds=0.0 if started is None else round(time.time() - started, 3),
        in_flight=service.intake.in_flight,
        store=_scheme(service.store) if service.state != "declared" else "",
        bus=None if bus is None else _scheme(bus),
        commands=tuple(sorted(service.command_types)),
        workers=tuple(service.workers()),
        dead_letters=letters,
        registrations=tuple(service.registrations()),
    )
