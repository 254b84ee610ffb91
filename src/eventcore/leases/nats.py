"""``KvLeases``: partition leases and group membership in the NATS KV bucket ``{ns}_leases``.

Keys: ``{scope}.members`` holds the live members of a scope with their expiry times;
``{scope}.p.{n}`` holds the claim on partition ``n``. Every change is a compare-and-set
on the key's revision (``create`` when absent, ``update``/``delete`` with the revision
read), so two members can never both win a claim.

Expiry is judged from the time written in the value, not by the bucket's ``max_age``:
a bucket's age limit is fixed when it is created, while each caller passes its own
ttl. The bucket's ``max_age`` only sweeps away keys nobody rewrites any more. Clocks of
the members' machines are compared, so they should agree to well within a ttl.
"""

from __future__ import annotations

import time

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from eventcore._nats.errors import translated
from eventcore.leases.protocol import check_ttl

__all__ = ["KvLeases"]

_ATTEMPTS = 20


class _Claim(msgspec.Struct, frozen=True):
    member: str
    expires: float


_claim_decoder = msgspec.json.Decoder(_Claim)
_members_decoder = msgspec.json.Decoder(dict[str, float])


class KvLeases:
    """The ``Leases`` protocol over one KV bucket. Scopes and members are KV-safe names."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def _read(self, key: str) -> tuple[bytes | None, int]:
        """The value and revision of ``key``; (None, revision-or-0) when absent."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError as missing:
            # A deleted key has a revision to compare against; ``create`` handles that.
            return None, 0 if missing.entry is None else missing.entry.revision or 0
        return entry.value, entry.revision or 0

    async def _write(self, key: str, value: bytes, revision: int) -> bool:
        """Compare-and-set; False when someone else wrote ``key`` since ``revision``."""
        try:
            if revision == 0:
                await self._kv.create(key, value)
            else:
                await self._kv.update(key, value, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def heartbeat(self, scope: str, member: str, ttl: float) -> list[str]:
        ttl = check_ttl(ttl)
        key = f"{scope}.members"
        with translated("renewing a group membership"):
            for _ in range(_ATTEMPTS):
                raw, revision = await self._read(key)
                now = time.time()
                members = _members_decoder.decode(raw) if raw else {}
                live = {name: until for name, until in members.items() if until > now}
                live[member] = now + ttl
                if await self._write(key, msgspec.json.encode(live), revision):
                    return sorted(live)
        return sorted(live)

    async def members(self, scope: str) -> list[str]:
        """The live members of ``scope``, sorted, without joining it."""
        with translated("reading a group's members"):
            raw, _ = await self._read(f"{scope}.members")
        now = time.time()
        members = _members_decoder.decode(raw) if raw else {}
        return sorted(name for name, until in members.items() if until > now)

    async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        key = f"{scope}.p.{partition}"
        with translated("claiming a partition"):
            for _ in range(_ATTEMPTS):
                raw, revision = await self._read(key)
                now = time.time()
                if raw:
                    claim = _claim_decoder.decode(raw)
                    if claim.member != member and claim.expires > now:
                        return False
                value = msgspec.json.encode(_Claim(member, now + ttl))
                if await self._write(key, value, revision):
                    return True
        return False

    async def holder(self, scope: str, partition: int) -> str | None:
        with translated("reading a partition's claim"):
            raw, _ = await self._read(f"{scope}.p.{partition}")
        if not raw:
            return None
        claim = _claim_decoder.decode(raw)
        return claim.member if claim.expires > time.time() else None

    async def release(self, scope: str, partition: int, member: str) -> None:
        key = f"{scope}.p.{partition}"
        with translated("releasing a partition"):
            for _ in range(_ATTEMPTS):
                raw, revision = await self._read(key)
                if not raw or _claim_decoder.decode(raw).member != member:
                    return
                try:
                    await self._kv.delete(key, last=revision)
                except KeyWrongLastSequenceError:
                    continue
                return

    async def leave(self, scope: str, member: str) -> None:
        key = f"{scope}.members"
        with translated("leaving a group"):
            for _ in range(_ATTEMPTS):
                raw, revision = await self._read(key)
                members = _members_decoder.decode(raw) if raw else {}
                if member not in members:
                    return
                del members[member]
                if await self._write(key, msgspec.json.encode(members), revision):
                    return

    async def read_handover(self, scope: str, partition: int) -> tuple[bytes | None, int]:
        """What the partition's last owner left its next (a messaging record, opaque
        here), with its revision for ``write_handover``."""
        with translated("taking a partition over"):
            return await self._read(f"{scope}.u.{partition}")

    async def write_handover(
        self, scope: str, partition: int, value: bytes, revision: int
    ) -> int | None:
        """Compare-and-set the partition's handover record; its new revision, or None
        when someone else wrote it since ``revision`` (another owner took over)."""
        key = f"{scope}.u.{partition}"
        with translated("handing a partition over"):
            try:
                if revision == 0:
                    return await self._kv.create(key, value)
                return await self._kv.update(key, value, last=revision)
            except KeyWrongLastSequenceError:
                return None
