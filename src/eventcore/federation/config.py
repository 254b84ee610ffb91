"""The hub's configuration file (TOML), loaded and checked whole before anything runs.

::

    [buses]
    main = "nats://127.0.0.1:4222"
    partner = { env = "PARTNER_BUS_URL" }   # a URL that holds a password stays out

    [[rules]]
    name = "users-to-billing"
    source = { bus = "main", topic = "users", service = "users" }   # service: optional
    type = "UserRegistered"                                         # a pattern (matcher.py)
    targets = [{ bus = "main", topic = "billing" }]
    stop = false                                                    # optional
    transforms = [                                                  # optional, in order
        { op = "rename-type", to = "CustomerCreated" },
        { op = "hash", fields = ["email"], key_env = "HUB_HASH_KEY" },
    ]

Bus URLs are literal, or read whole from an environment variable (``{ env = "NAME" }``);
there is no ``${NAME}`` interpolation inside a string, so what a value is can be told
at a glance. Secrets (the keys of ``hash`` and ``tokenize``) are never in the file:
a step names the environment variable that holds its key (``key_env``), and a variable
that is not set is a problem at load, not at the first event.

Ops: ``rename-type`` (``to``), ``set-source`` (``to``), ``keep`` / ``drop``
(``fields``), ``rename`` (``from``, ``to``), ``hash`` (``fields``, ``key_env``),
``redact`` (``fields``, optional ``marker``), ``mask`` (``fields``, optional ``keep``
= 4 and ``char`` = ``*``), ``tokenize`` (``fields``, ``key_env``), ``function``
(``function = "module:function"``, imported at load).

Every problem found is reported (``InvalidConfig.problems``), each naming the file,
the rule and the field; one bad rule refuses the whole file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventcore.errors import InvalidConfig, InvalidUrl
from eventcore.federation._reader import Reader, kind
from eventcore.federation._steps_config import read_steps
from eventcore.federation.matcher import TypePattern
from eventcore.federation.rules import Origin, Rule, RuleSource, RuleTarget
from eventcore.messaging.url import BusUrl

__all__ = ["HubConfig", "load_config", "parse_config"]

#: Larger than any hand-written configuration; a bigger file is a wrong file.
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HubConfig:
    #: The file it was read from, as given.
    file: str
    #: Bus alias → URL.
    buses: Mapping[str, str]
    rules: tuple[Rule, ...]

    @property
    def origins(self) -> tuple[Origin, ...]:
        """Every (bus, topic) a rule reads, once each, in the order rules name them."""
        return tuple(dict.fromkeys(rule.source.origin for rule in self.rules))


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> HubConfig:
    """Read and check the configuration at ``path``; ``InvalidConfig`` if anything is
    wrong (including a file that cannot be read). ``environ`` (default: the process
    environment) is where bus URLs and keys are looked up."""
    file = os.fspath(path)
    problem: str | None = None
    text = ""
    try:
        with Path(file).open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        problem = f"cannot be read: {error.strerror or error}"
    except ValueError as error:  # a path with a NUL byte
        problem = f"cannot be read: {error}"
    else:
        if len(raw) > MAX_CONFIG_BYTES:
            problem = f"is larger than {MAX_CONFIG_BYTES} bytes"
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                problem = f"is not valid UTF-8 (byte {error.start})"
    if problem is not None:
        reader = Reader(file, {})
        reader.problem("file", problem)
        raise InvalidConfig(file, reader.problems)
    return parse_config(text, file=file, environ=environ)


def parse_config(
    text: str, *, file: str = "<config>", environ: Mapping[str, str] | None = None
) -> HubConfig:
    """Check the TOML ``text`` as ``load_config`` does; ``file`` names it in problems."""
    reader = Reader(file, os.environ if environ is None else environ)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        reader.problem("file", f"not valid TOML: {error}")
        raise InvalidConfig(file, reader.problems) from None
    reader.table(document, "", ("buses", "rules"))
    buses = _read_buses(reader, document.get("buses"))
    rules = _read_rules(reader, document.get("rules"), buses)
    if reader.problems or buses is None or rules is None:
        raise InvalidConfig(file, reader.problems)
    return HubConfig(file, buses, rules)


def _read_buses(reader: Reader, value: object) -> dict[str, str] | None:
    if value is None:
        reader.problem("buses", "missing: name each bus the rules use ([buses] main = URL)")
        return None
    if not isinstance(value, dict):
        reader.problem("buses", f"expected a table of alias = URL, got {kind(value)}")
        return None
    table: dict[str, Any] = value
    buses: dict[str, str] = {}
    reader.declared.update(table)
    for alias, entry in table.items():
        name = f"buses.{alias}"
        if reader.name_of("bus alias", name)(alias) is None:
            continue
        url = _bus_url(reader, entry, name)
        if url is not None:
            buses[alias] = url
    if not table:
        reader.problem("buses", "no bus is named")
    return buses


def _bus_url(reader: Reader, entry: object, name: str) -> str | None:
    if isinstance(entry, str):
        url, shown = entry, "URL"
    elif isinstance(entry, dict) and reader.table(entry, name, ("env",)) is not None:
        found = reader.secret(entry, "env", f"{name}.env")
        if found is None:
            return None
        url, shown = found[1].decode("utf-8", "surrogateescape"), f"URL in ${found[0]}"
    else:
        reader.problem(name, 'expected a bus URL, or { env = "VARIABLE" }')
        return None
    try:
        BusUrl.parse(url)
    except InvalidUrl as error:
        # The reason only: a URL from the environment may hold a password.
        reader.problem(name, f"the {shown} is not a bus URL: {error.reason}")
        return None
    return url


_RULE_FIELDS = ("name", "source", "type", "targets", "transforms", "stop")


def _read_rules(
    reader: Reader, value: object, buses: dict[str, str] | None
) -> tuple[Rule, ...] | None:
    if value is None:
        reader.problem("rules", "missing: at least one [[rules]] is needed")
        return None
    if not isinstance(value, list) or not value:
        reader.problem("rules", "expected one or more [[rules]] tables")
        return None
    rules: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(value):
        reader.rule, reader.prefix = None, f"rules[{index}]."
        name = _rule_name(reader, entry, first_index, index)
        if name is not None:
            reader.rule, reader.prefix = name, ""
        rule = _read_rule(reader, entry, name, buses)
        if rule is not None:
            rules.append(rule)
    reader.rule, reader.prefix = None, ""
    return tuple(rules) if len(rules) == len(value) else None


def _rule_name(
    reader: Reader, entry: object, first_index: dict[str, int], index: int
) -> str | None:
    if not isinstance(entry, dict):
        return None
    name = reader.take(entry, "name", "name", str, reader.name_of("rule", "name"))
    if name is None:
        return None
    if name in first_index:
        reader.rule, reader.prefix = name, ""
        reader.problem("name", f"another rule has this name (rules[{first_index[name]}])")
        return None
    first_index[name] = index
    return name


def _read_rule(
    reader: Reader, entry: object, name: str | None, buses: dict[str, str] | None
) -> Rule | None:
    table = reader.table(entry, "", _RULE_FIELDS)
    if table is None:
        return None
    source = _read_source(reader, table.get("source"), buses)
    pattern_text = reader.take(table, "type", "type", str)
    pattern = (
        reader.built("type", lambda: TypePattern(pattern_text))
        if pattern_text is not None
        else None
    )
    targets = _read_targets(reader, table.get("targets"), buses, source)
    steps = read_steps(reader, table["transforms"]) if "transforms" in table else ()
    stop = reader.take(table, "stop", "stop", bool, required=False)
    if "stop" in table and stop is None:
        return None
    if name is None or source is None or pattern is None or targets is None or steps is None:
        return None
    return Rule(name, source, pattern, targets, steps, bool(stop))


def _bus_alias(
    reader: Reader, table: Mapping[str, Any], name: str, buses: dict[str, str] | None
) -> str | None:
    alias = reader.take(table, "bus", name, str)
    if alias is None or buses is None:
        return alias
    if alias not in buses:
        if alias in reader.declared:
            return None  # its own problem is reported already, under [buses]
        known = ", ".join(sorted(buses)) or "none"
        reader.problem(name, f"no bus {alias!r} in [buses] (named: {known})")
        return None
    return alias


def _read_source(reader: Reader, value: object, buses: dict[str, str] | None) -> RuleSource | None:
    if value is None:
        reader.problem("source", "missing: { bus = ALIAS, topic = TOPIC }")
        return None
    table = reader.table(value, "source", ("bus", "topic", "service"))
    if table is None:
        return None
    bus = _bus_alias(reader, table, "source.bus", buses)
    topic = reader.take(
        table, "topic", "source.topic", str, reader.name_of("topic", "source.topic")
    )
    service = reader.take(
        table,
        "service",
        "source.service",
        str,
        reader.name_of("service", "source.service"),
        required=False,
    )
    if bus is None or topic is None or ("service" in table and service is None):
        return None
    return RuleSource(bus, topic, service)


def _read_targets(
    reader: Reader, value: object, buses: dict[str, str] | None, source: RuleSource | None
) -> tuple[RuleTarget, ...] | None:
    if value is None:
        reader.problem("targets", "missing: [{ bus = ALIAS, topic = TOPIC }, ...]")
        return None
    if not isinstance(value, list) or not value:
        reader.problem("targets", "expected an array of one or more { bus, topic } tables")
        return None
    targets: list[RuleTarget] = []
    for index, entry in enumerate(value):
        name = f"targets[{index}]"
        table = reader.table(entry, name, ("bus", "topic"))
        if table is None:
            continue
        bus = _bus_alias(reader, table, f"{name}.bus", buses)
        topic = reader.take(
            table, "topic", f"{name}.topic", str, reader.name_of("topic", f"{name}.topic")
        )
        if bus is None or topic is None:
            continue
        target = RuleTarget(bus, topic)
        if target in targets:
            reader.problem(name, f"{target} is already a target of this rule")
        elif source is not None and (bus, topic) == (source.bus, source.topic):
            # Its copies would come back to it, and round again.
            reader.problem(name, f"{target} is the rule's own source: the copies would loop")
        else:
            targets.append(target)
    return tuple(targets) if len(targets) == len(value) else None
