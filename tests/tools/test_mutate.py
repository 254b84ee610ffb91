"""tools/mutate.py: the mutants it makes, and how it judges them on a small project."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate", ROOT / "tools" / "mutate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutate"] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


mutate = load_tool()

SAMPLE = '''\
import logging

log = logging.getLogger(__name__)


def within(value: int, low: int, high: int) -> bool:
    return low <= value and not value > high


def total(counts: dict[str, int], key: str) -> int:
    log.debug("adding %s", key)
    counts[key] += 1
    return sum(counts.values())


def first(items: list[int]) -> int | None:
    """The first item, if any."""
    if items:
        return items[0]
    return None


def pair(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)  # pragma: no mutate


def order(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)
'''

#: (line, function, operator, the new text of the line) for every mutant of SAMPLE.
EXPECTED = [
    (7, "within", "return", "return None"),
    (7, "within", "boolean", "return low <= value or not value > high"),
    (7, "within", "compare", "return low < value and not value > high"),
    (7, "within", "not", "return low <= value and value > high"),
    (7, "within", "compare", "return low <= value and not value >= high"),
    (11, "total", "return", "return"),
    (12, "total", "delete", "pass"),
    (12, "total", "arith", "counts[key] -= 1"),
    (12, "total", "number", "counts[key] += 2"),
    (12, "total", "number", "counts[key] += 0"),
    (13, "total", "return", "return None"),
    (18, "first", "return", "return"),
    (18, "first", "condition", "if True:"),
    (18, "first", "condition", "if False:"),
    (19, "first", "return", "return None"),
    (19, "first", "number", "return items[1]"),
    (19, "first", "number", "return items[-1]"),
    (28, "order", "return", "return None"),
    (28, "order", "arguments", "return divmod(b, a)"),
]


def test_the_sample_gets_one_mutant_per_operator_and_place() -> None:
    found = mutate.mutants("sample.py", SAMPLE)
    assert [(m.line, m.function, m.operator, m.diff[-1][1:].strip()) for m in found] == EXPECTED
    # Each is the sample with that one change, and valid Python.
    for mutant in found:
        compile(mutant.source, "sample.py", "exec")
        changed = [line for line in mutant.diff if line.startswith("-")]
        assert changed == [f"-{line}" for line in (SAMPLE.splitlines()[mutant.line - 1],)] or (
            not changed and mutant.operator == "return"
        )


def test_a_mutants_id_stays_while_another_function_changes() -> None:
    before = {m.id for m in mutate.mutants("sample.py", SAMPLE) if m.function == "within"}
    edited = SAMPLE.replace("counts[key] += 1", "counts[key] += 1\n    counts[key] *= 2")
    after = {m.id for m in mutate.mutants("sample.py", edited) if m.function == "within"}
    assert len(before) == 5
    assert after == before
    assert len({m.id for m in mutate.mutants("sample.py", SAMPLE)}) == len(EXPECTED)


def test_only_keeps_the_mutants_inside_the_named_function() -> None:
    found = mutate.mutants("sample.py", SAMPLE)
    assert {m.function for m in mutate.select(found, ["first"], [])} == {"first"}
    one = found[0].id
    assert [m.id for m in mutate.select(found, [], [one])] == [one]


# --- a run on a small project -------------------------------------------------------------

RULES = """\
def is_adult(age: int) -> bool:
    return age >= 18


def fee(age: int) -> int:
    if is_adult(age):
        return 10
    return 5


def spin(n: int) -> int:
    while n > 0:
        n -= 1
    return n
"""

TESTS = """\
from sample.rules import fee, is_adult, spin


def test_adults_are_eighteen_and_over() -> None:
    assert is_adult(18)
    assert not is_adult(10)


def test_an_adult_pays_ten() -> None:
    assert fee(30) == 10


def test_spin_counts_down() -> None:
    assert spin(3) == 0
"""


#: The sample's tests need none of the plugins this suite installs; starting without
#: them keeps each of the tool's pytest runs short.
LEAN = [f"-pno:{name}" for name in ("hypothesispytest", "benchmark", "anyio", "asyncio")]


@dataclass
class Run:
    code: int
    output: str
    ids: dict[str, str]  #: what each mutant is, by id


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One run of the tool on a small project, on a chosen handful of its mutants."""
    project = tmp_path_factory.mktemp("project")
    # pytest-timeout (as in this project) turns the hang of a mutant into a failure.
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntimeout = 2\n")
    (project / "src" / "sample").mkdir(parents=True)
    (project / "src" / "sample" / "__init__.py").write_text("")
    (project / "src" / "sample" / "rules.py").write_text(RULES)
    (project / "tests").mkdir()
    (project / "tests" / "test_rules.py").write_text(TESTS)
    found = mutate.mutants("src/sample/rules.py", RULES)

    def one(line: int, change: str) -> str:
        [mutant] = [m for m in found if m.line == line and m.diff[-1] == change]
        return str(mutant.id)

    ids = {
        "killed": one(2, "+    return age > 18"),
        "survived": one(2, "+    return age >= 17"),
        "equivalent": one(6, "+    if True:"),
        "uncovered": one(8, "+    return 6"),
        "timeout": one(13, "+        pass"),
    }
    (project / "equivalent.txt").write_text(f"{ids['equivalent']}  # argued elsewhere\n")
    stdout = project / "stdout.txt"
    scratch = tmp_path_factory.mktemp("scratch")
    with open(stdout, "w") as out, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        patch.setattr(tempfile, "tempdir", str(scratch))
        code = mutate.main(
            [str(project / "src" / "sample" / "rules.py"), "-j", "2"]
            + [option for mutant_id in ids.values() for option in ("--id", mutant_id)]
            + ["--equivalent", str(project / "equivalent.txt"), "--", "tests", *LEAN]
        )
    # The mutants ran in copies, removed at the end; the project itself is untouched.
    assert list(scratch.iterdir()) == []
    assert (project / "src" / "sample" / "rules.py").read_text() == RULES
    return Run(code, stdout.read_text(), ids)


def test_the_table_counts_each_outcome_and_scores_the_module(run: Run) -> None:
    assert run.code == 0, run.output
    [row] = [line for line in run.output.splitlines() if line.startswith("src/sample/rules.py ")]
    # mutants, killed, timeout, survived, uncovered, equivalent, error, score: 2 of 4.
    assert row.split()[1:] == ["5", "1", "1", "1", "1", "1", "0", "50.0%"]


def test_a_survivor_is_listed_with_its_place_and_change(run: Run) -> None:
    survivors = run.output.split("Survivors")[1].split("Uncovered")[0]
    assert f"src/sample/rules.py:2  {run.ids['survived']}" in survivors
    assert "-    return age >= 18\n    +    return age >= 17" in survivors
    assert run.ids["killed"] not in run.output
    assert run.ids["equivalent"] not in run.output


def test_an_uncovered_mutant_is_listed_apart(run: Run) -> None:
    uncovered = run.output.split("Uncovered")[1]
    assert f"src/sample/rules.py:8  {run.ids['uncovered']}" in uncovered


def test_the_score_leaves_equivalent_mutants_out() -> None:
    outcomes = [mutate.Outcome(m, "survived") for m in mutate.mutants("s.py", SAMPLE)[:2]]
    assert mutate.score(outcomes) == 0.0
    assert mutate.score([mutate.Outcome(outcomes[0].mutant, "equivalent")]) is None


def test_the_equivalent_file_takes_ids_and_comments(tmp_path: Path) -> None:
    listing = tmp_path / "equivalent.txt"
    listing.write_text(
        textwrap.dedent("""\
        # follower
        a:b:compare:1234abcd  # the loop ends either way

        c:d:number:5678ef01
        """)
    )
    assert mutate.read_equivalent(listing) == {"a:b:compare:1234abcd", "c:d:number:5678ef01"}
