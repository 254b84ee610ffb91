"""Finding the service a command line names: ``module:attribute``, nothing else.

The module is imported the ordinary way (so it must be importable from the working
directory or the path), and the attribute must be a ``Service``; anything else is a
typed error that says which part was wrong.
"""

from __future__ import annotations

import importlib
import sys

from eventcore.service.errors import InvalidService
from eventcore.service.service import Service

__all__ = ["load_service"]


def load_service(spec: str) -> Service:
    """The ``Service`` that ``spec`` (``package.module:attribute``) names."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name.strip() or not attribute.strip():
        raise InvalidService(
            f"name the service as module:attribute (e.g. shop.app:service), got {spec!r}"
        )
    # Run from a project directory, the service's module sits beside the caller.
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise InvalidService(f"no module named {module_name!r} (from {spec!r})") from error
        raise
    except (TypeError, ValueError, UnicodeError) as error:
        # A relative name (``..x``) or one no file system can hold.
        raise InvalidService(f"{module_name!r} is not a module name (from {spec!r})") from error
    found: object = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InvalidService(f"module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, Service):
        raise InvalidService(f"{spec!r} is a {type(found).__name__}, not an eventcore Service")
    return found
