"""Service discovery: instances register, heartbeat and are found by service name.

- ``open_registry(url)``: ``memory://``, ``sqlite:///path`` (the processes of one
  machine) or ``nats://host:port`` (a JetStream key-value bucket), giving a ``Registry``.
- ``Instance.of(service, address, version=..., metadata=...)``: what is registered,
  checked field by field.
- ``registry.register(instance, ttl=...)``: a ``Registration`` (a ``Worker``, also an
  async context manager) that keeps the instance listed through the lease primitive
  (``eventcore.leases``) and deregisters it on a clean stop; a killed process drops
  out when its TTL runs out.
- ``registry.discover(service)``, ``registry.services()``: the live instances, the
  services that have any.
- ``Registrar(registry)``: ``await register(service, instance_id, address, ...)`` and
  ``await deregister(service, instance_id)`` by call, for a runtime that owns no task
  group for the registrations (each is still a ``Registration`` underneath).
- ``RegistryResolver(registry)``: the resolver of ``eventcore.resilience.ServiceClient``.

Errors: ``InvalidUrl``, ``InvalidName`` and ``InvalidInstance`` for bad input;
``RegistryUnavailable`` and ``RegistryClosed`` (under ``RegistryError``) for the backend.
"""

from eventcore.registry.directory import Directory, MemoryDirectory
from eventcore.registry.instance import (
    MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES,
    Instance,
    check_instance_id,
)
from eventcore.registry.registrar import Registrar
from eventcore.registry.registration import (
    DEFAULT_TTL,
    MAX_TTL,
    Registration,
    RegistrationStatus,
)
from eventcore.registry.registry import Registry, open_registry
from eventcore.registry.resolver import RegistryResolver
from eventcore.registry.url import RegistryUrl

__all__ = [
    "DEFAULT_TTL",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_ENTRIES",
    "MAX_TTL",
    "Directory",
    "Instance",
    "MemoryDirectory",
    "Registrar",
    "Registration",
    "RegistrationStatus",
    "Registry",
    "RegistryResolver",
    "RegistryUrl",
    "check_instance_id",
    "open_registry",
]
