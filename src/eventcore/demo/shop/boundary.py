"""The boundary between the shop's services and analytics: a federation hub.

Its rules are ``hub.toml``, shipped beside this module; ``analytics_hub`` loads them
and runs them on the shop's bus. The key that hashes customers' e-mail addresses is
the caller's (the demo makes one per run): it is a secret, so never in the file.
"""

from __future__ import annotations

from importlib.resources import as_file, files

from eventcore.federation import Hub, HubConfig, load_config
from eventcore.messaging import Bus

__all__ = ["HUB_CONFIG", "analytics_hub", "hub_config"]

#: The configuration's file name, inside this package.
HUB_CONFIG = "hub.toml"


def hub_config(hash_key: str, bus_url: str = "memory://") -> HubConfig:
    """The hub's rules, with the hashing key and the bus URL they read from the
    environment given here instead (``InvalidConfig`` if the key is too short). The URL
    matters only to a hub that opens its bus (``eventcore federate run``); one given an
    open bus never reads it."""
    with as_file(files(__package__ or "eventcore.demo.shop") / HUB_CONFIG) as path:
        return load_config(path, environ={"SHOP_BUS_URL": bus_url, "SHOP_HASH_KEY": hash_key})


def analytics_hub(bus: Bus, hash_key: str) -> Hub:
    """The hub routing the orders topic to analytics on ``bus``."""
    return Hub(hub_config(hash_key), {"shop": bus})
