"""``Instance``: one running instance of a service, as the registry lists it.

Every field is checked when an instance is made, so what a backend stores and what
``discover`` returns are always well formed, and one oversized or odd registration
cannot bloat every reader's answer: ``service`` is a service name (a host name label,
as the service client resolves it), ``instance_id`` the same alphabet (it is a key in
every backend), ``address`` an instance's base URL without credentials, ``version`` a
short printable text and ``metadata`` a small table of text values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Final

import msgspec

from eventcore.errors import InvalidInstance, InvalidName, InvalidUrl
from eventcore.resilience import check_base_url, check_service

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "MAX_INSTANCE_ID_LENGTH",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_KEY_LENGTH",
    "MAX_METADATA_VALUE_LENGTH",
    "MAX_VERSION_LENGTH",
    "Instance",
    "check_instance_id",
]

MAX_INSTANCE_ID_LENGTH: Final = 64
MAX_ADDRESS_LENGTH: Final = 512
MAX_VERSION_LENGTH: Final = 64
MAX_METADATA_ENTRIES: Final = 32
MAX_METADATA_KEY_LENGTH: Final = 64
MAX_METADATA_VALUE_LENGTH: Final = 512
#: The whole metadata table, encoded as JSON.
MAX_METADATA_BYTES: Final = 4096

_INSTANCE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_METADATA_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_instance_id(value: object) -> str:
    """``value`` if it can name an instance: 1–64 letters, digits, ``-`` and ``_``,
    starting with a letter or digit; else ``InvalidName``."""
    if not isinstance(value, str):
        raise InvalidName("instance id", value, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidName(
            "instance id",
            value[:MAX_INSTANCE_ID_LENGTH] + "...",
            f"it has {len(value)} characters; at most {MAX_INSTANCE_ID_LENGTH} are allowed",
        )
    if _INSTANCE_ID.fullmatch(value) is None:
        raise InvalidName(
            "instance id",
            value,
            "it must be letters, digits, '-' and '_', starting with a letter or digit",
        )
    return value


def _check_text(field: str, value: object, most: int) -> str:
    if not isinstance(value, str):
        raise InvalidInstance(field, f"expected a string, got {type(value).__name__}")
    if len(value) > most:
        raise InvalidInstance(field, f"it has {len(value)} characters; at most {most} are allowed")
    if not value.isprintable():
        raise InvalidInstance(field, "it holds a control character (a NUL, a newline...)")
    return value


def _check_metadata(metadata: object) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise InvalidInstance(
            "metadata", f"expected a mapping of text to text, got {type(metadata).__name__}"
        )
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidInstance(
            "metadata",
            f"it has {len(metadata)} entries; at most {MAX_METADATA_ENTRIES} are allowed",
        )
    checked: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or _METADATA_KEY.fullmatch(key) is None:
            raise InvalidInstance(
                "metadata",
                f"key {str(key)[:MAX_METADATA_KEY_LENGTH]!r} is not a name: letters, digits,"
                " '-', '_' and '.', starting with a letter or digit",
            )
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise InvalidInstance(
                "metadata",
                f"key {key[:MAX_METADATA_KEY_LENGTH]!r}... is longer than"
                f" {MAX_METADATA_KEY_LENGTH} characters",
            )
        checked[key] = _check_text(f"metadata[{key!r}]", value, MAX_METADATA_VALUE_LENGTH)
    size = len(msgspec.json.encode(checked))
    if size > MAX_METADATA_BYTES:
        raise InvalidInstance(
            "metadata", f"it is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed"
        )
    return checked


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """One instance of ``service``, reachable at ``address`` (``http://host:port``).

    Make one with ``Instance.of(service, address, ...)``, which picks a fresh
    ``instance_id`` unless given one; building it directly checks every field the same
    way (``InvalidName`` for the names, ``InvalidUrl`` for the address,
    ``InvalidInstance`` for the rest).
    """

    service: str
    instance_id: str
    address: str
    version: str = ""
    metadata: dict[str, str] = {}

    def __post_init__(self) -> None:
        check_service(self.service)
        check_instance_id(self.instance_id)
        if isinstance(self.address, str) and len(self.address) > MAX_ADDRESS_LENGTH:
            raise InvalidUrl(
                self.address[:64] + "...",
                f"an instance's address is at most {MAX_ADDRESS_LENGTH} characters",
            )
        # Frozen: the checked values are put in place the way msgspec allows.
        msgspec.structs.force_setattr(self, "address", check_base_url(self.address))
        _check_text("version", self.version, MAX_VERSION_LENGTH)
        msgspec.structs.force_setattr(self, "metadata", _check_metadata(self.metadata))

    @classmethod
    def of(
        cls,
        service: str,
        address: str,
        *,
        instance_id: str | None = None,
        version: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> Instance:
        """A checked instance; ``instance_id`` defaults to a fresh random one."""
        return cls(
            service=service,
            instance_id=uuid.uuid4().hex if instance_id is None else instance_id,
            address=address,
            version=version,
            metadata=dict(metadata or {}),
        )
