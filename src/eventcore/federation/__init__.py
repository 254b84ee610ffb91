"""The federation hub's core: rules that route events between services and domains,
and transform them on the way (docs/guides/federation.md).

- ``load_config`` reads a hub's TOML configuration into a ``HubConfig`` (its buses and
  ``Rule``s), checked whole: any problem refuses the file (``InvalidConfig``).
- ``TypePattern`` matches CloudEvents types (``user.*``, ``orders.**``, ``User*``).
- ``route`` gives the routed copies of one event (``Routing``); ids of copies come from
  ``routed_id``. It does no I/O: the hub worker publishes what it returns.
- ``Hub`` is the worker that does it: a consumer-group member on every source, it
  publishes each copy to its targets and acknowledges the source after them.
- ``Tokenizer`` makes and reveals the reversible tokens of ``tokenize``;
  ``hash_value`` is the keyed hash of ``hash``.
"""

from eventcore.federation.config import HubConfig, load_config, parse_config
from eventcore.federation.hub import DEFAULT_GROUP, Hub, HubStatus, SourceStatus
from eventcore.federation.matcher import TypePattern
from eventcore.federation.pii import Tokenizer, hash_value
from eventcore.federation.routing import Routed, Routing, route, routed_id
from eventcore.federation.rules import Origin, Rule, RuleSource, RuleTarget
from eventcore.federation.transforms import Draft, UserFunction

__all__ = [
    "DEFAULT_GROUP",
    "Draft",
    "Hub",
    "HubConfig",
    "HubStatus",
    "Origin",
    "Routed",
    "Routing",
    "Rule",
    "RuleSource",
    "RuleTarget",
    "SourceStatus",
    "Tokenizer",
    "TypePattern",
    "UserFunction",
    "hash_value",
    "load_config",
    "parse_config",
    "route",
    "routed_id",
]
