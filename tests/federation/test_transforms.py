"""Each transformation on its own: fields by dotted path, masking, redaction, and the
user's function."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from eventcore.errors import InvalidInput
from eventcore.federation import Draft, Origin, route
from eventcore.federation.fields import FieldPath, StepFailed
from eventcore.federation.transforms import Drop, Keep, Mask, Redact, RenameField, Step
from tests.federation.samples import config, data_of, envelope, rule

NESTED: dict[str, Any] = {
    "id": 7,
    "customer": {"name": "Ada", "email": "ada@example.com", "address": {"city": "Leeds"}},
    "lines": [{"sku": "kettle"}],
}


def paths(*texts: str) -> tuple[FieldPath, ...]:
    return tuple(FieldPath(text) for text in texts)


def applied(step: Step, data: Any) -> Any:
    draft = Draft(type="T", source="s", data=copy.deepcopy(data), original=envelope())
    step.apply(draft)
    return draft.data


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            Keep(paths("id", "customer.address.city")),
            {"id": 7, "customer": {"address": {"city": "Leeds"}}},
        ),
        (Keep(paths("customer.phone")), {}),
        (
            Drop(paths("customer.email", "lines")),
            {"id": 7, "customer": {"name": "Ada", "address": {"city": "Leeds"}}},
        ),
        (Drop(paths("customer.phone", "nothing.here")), NESTED),
        (
            RenameField(FieldPath("customer.address.city"), FieldPath("city")),
            {**NESTED, "customer": {**NESTED["customer"], "address": {}}, "city": "Leeds"},
        ),
        (
            RenameField(FieldPath("id"), FieldPath("order.ref")),
            {**{k: v for k, v in NESTED.items() if k != "id"}, "order": {"ref": 7}},
        ),
        (RenameField(FieldPath("missing"), FieldPath("elsewhere")), NESTED),
        (
            Redact(paths("customer.email"), "[redacted]"),
            {**NESTED, "customer": {**NESTED["customer"], "email": "[redacted]"}},
        ),
    ],
    ids=[
        "keep",
        "keep-missing",
        "drop",
        "drop-missing",
        "rename-out",
        "rename-in",
        "rename-missing",
        "redact",
    ],
)
def test_a_field_step_edits_the_paths_it_names_and_nothing_else(step: Step, expected: Any) -> None:
    assert applied(step, NESTED) == expected


@pytest.mark.parametrize(
    ("step", "data", "reason"),
    [
        (Drop(paths("lines.sku")), NESTED, "'lines' is a list, not an object"),
        (Redact(paths("customer.name.first")), NESTED, "'customer.name' is text, not an object"),
        (Keep(paths("id")), [1, 2], "the payload is a list, not an object"),
        (
            RenameField(FieldPath("id"), FieldPath("customer")),
            NESTED,
            "'customer' is already there",
        ),
        (Mask(paths("customer"), 4, "*"), NESTED, "mask takes text or a number, got dict"),
    ],
)
def test_a_path_the_step_cannot_follow_fails_the_event(step: Step, data: Any, reason: str) -> None:
    with pytest.raises(StepFailed, match=reason):
        applied(step, data)


@pytest.mark.parametrize(
    ("value", "keep", "masked"),
    [
        ("4111111111111111", 4, "************1111"),
        (4111111111111111, 4, "************1111"),
        ("12345678", 4, "****5678"),
        # Fewer hidden than shown would give most of it away: masked whole.
        ("1234567", 4, "*******"),
        ("1234", 4, "****"),
        ("", 4, ""),
    ],
)
def test_mask_keeps_a_suffix_only_when_as_much_is_hidden(
    value: Any, keep: int, masked: str
) -> None:
    assert applied(Mask(paths("card"), keep, "*"), {"card": value}) == {"card": masked}


@pytest.mark.parametrize("text", ["", " a", "a..b", ".a", "a."])
def test_a_field_path_with_an_empty_segment_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        FieldPath(text)


# --- the user's function ---------------------------------------------------------------


def initials(draft: Draft) -> None:
    """A user function: replace the name by its initials and mark the type."""
    draft.data["name"] = "".join(part[0] for part in draft.data.pop("name").split())
    draft.type = f"{draft.original.type}.v2"


def explodes(draft: Draft) -> None:
    raise RuntimeError("no such customer")


def unencodable(draft: Draft) -> None:
    draft.data["when"] = object()


def clears_type(draft: Draft) -> None:
    draft.type = ""


def with_function(reference: str) -> list[Any]:
    extra = f'transforms = [{{ op = "function", function = "{reference}" }}]'
    return list(config(rule("user-code", extra=extra)).rules)


def test_a_user_function_edits_the_copy() -> None:
    rules = with_function("tests.federation.test_transforms:initials")

    routing = route(envelope(data={"name": "Ada King"}), Origin("main", "users"), rules)

    (copy_,) = routing.routed
    assert data_of(copy_.envelope) == {"name": "AK"}
    assert copy_.envelope.type == "UserRegistered.v2"


@pytest.mark.parametrize(
    ("function", "step", "reason"),
    [
        ("explodes", "transforms[0]", "RuntimeError: no such customer"),
        ("unencodable", "payload", "not encodable as JSON"),
        ("clears_type", "type", "must be non-empty text"),
    ],
)
def test_a_user_function_that_fails_fails_the_event_with_the_reason(
    function: str, step: str, reason: str
) -> None:
    rules = with_function(f"tests.federation.test_transforms:{function}")

    routing = route(envelope(data={"name": "Ada"}), Origin("main", "users"), rules)

    assert routing.routed == ()
    (failure,) = routing.failed
    assert failure.step.startswith(step)
    assert reason in failure.reason
