"""Where a service's settings come from: explicit arguments first, then ``EVENTCORE_*``
environment variables, then the defaults here. The command line passes its flags in as
explicit arguments (typer reads the same variables for a flag that is not given).

No setting names code: the only dotted name is the ``module:attribute`` that names the
service itself (``eventcore.service.loading``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "BUS_ENV",
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_GRACE",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "REGISTRY_ENV",
    "STORE_ENV",
    "setting",
]

STORE_ENV = "EVENTCORE_STORE"
BUS_ENV = "EVENTCORE_BUS"
REGISTRY_ENV = "EVENTCORE_REGISTRY"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Seconds a draining service gives in-flight work, and then its relay, to finish.
DEFAULT_GRACE = 10.0
#: Seconds one command may take (reads, retries, append) before it is a timeout (504).
DEFAULT_COMMAND_TIMEOUT = 10.0


def setting(
    explicit: str | None, variable: str, environment: Mapping[str, str] | None = None
) -> str | None:
    """``explicit`` if given, else the non-empty environment variable, else None."""
    if explicit is not None:
        return explicit
    found = (os.environ if environment is None else environment).get(variable, "").strip()
    return found or None
