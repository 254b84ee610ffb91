"""The service runtime (docs/guides/serving.md): ``Service`` declares one service and
runs its workers as one unit, with readiness, restarts and a drain that loses nothing;
``eventcore serve`` (``eventcore.web``) gives it an HTTP face."""

from eventcore.service.declared import Wiring
from eventcore.service.errors import InvalidService, ServiceDraining, UnknownCommand
from eventcore.service.health import Check, Readiness, ServiceStatus, readiness, status
from eventcore.service.intake import Intake
from eventcore.service.loading import load_service
from eventcore.service.registration import Registrar
from eventcore.service.service import Service, ServiceState
from eventcore.service.supervisor import Supervised, WorkerHealth, WorkerState

__all__ = [
    "Check",
    "Intake",
    "InvalidService",
    "Readiness",
    "Registrar",
    "Service",
    "ServiceDraining",
    "ServiceState",
    "ServiceStatus",
    "Supervised",
    "UnknownCommand",
    "Wiring",
    "WorkerHealth",
    "WorkerState",
    "load_service",
    "readiness",
    "status",
]
