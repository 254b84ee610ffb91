"""The bank (``eventcore.demo.bank``) as a service: ``eventcore serve
eventcore.demo.bank_service:service --store sqlite:///bank.db --bus sqlite:///bus.db``.

It accepts ``OpenAccount`` and ``Transfer`` over HTTP and over the bus, and publishes
every event to the ``bank`` topic. The store and bus are the command line's (or
``EVENTCORE_STORE`` / ``EVENTCORE_BUS``): the declaration names no place."""

from __future__ import annotations

from eventcore.demo.bank import (
    AccountOpened,
    Deposited,
    OpenAccount,
    Transfer,
    Withdrawn,
    registry,
)
from eventcore.messaging.topics import TopicMap
from eventcore.service import Service

__all__ = ["service"]

service = Service(
    "bank",
    events=registry,
    commands=[OpenAccount, Transfer],
    bus_commands=[OpenAccount, Transfer],
    topics=TopicMap({AccountOpened: "bank", Deposited: "bank", Withdrawn: "bank"}),
    version="1.0",
    description="Accounts and transfers between them, as one small eventcore service.",
)
