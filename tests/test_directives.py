"""The ``# mlt:`` directive parser."""

from __future__ import annotations

import pytest

from mlt_kernel.core.errors import DirectiveError
from mlt_kernel.recording.directives import parse_cell


def test_record_with_typed_params_and_a_trailing_comment():
    cell = parse_cell(
        "# mlt: record name=random_forest n_estimators=300 max_depth=8 lr=1e-3 bootstrap=false"
        " label='300' title=\"a b\"   # this cell is a run\nfit()\n"
    )
    (d,) = cell.directives
    assert (d.verb, d.action, d.name) == ("record", "cell", "random_forest")
    assert d.params == {
        "n_estimators": 300,
        "max_depth": 8,
        "lr": 1e-3,
        "bootstrap": False,
        "label": "300",
        "title": "a b",
    }
    assert cell.body == "fit()\n"


def test_start_stop_skip_and_note():
    assert parse_cell("# mlt: record start name=mlp lr=0.001").directives[0].action == "start"
    assert parse_cell("# mlt: record stop").directives[0].action == "stop"
    assert parse_cell("\n  # mlt: skip\nx = 1").directives[0].verb == "skip"
    note = parse_cell('# mlt: note plot=roc_rf.png doc="Findings 2"\n# Results\nThe *forest* wins.')
    assert note.directives[0].options == {"plot": "roc_rf.png", "doc": "Findings 2"}
    assert note.body == "# Results\nThe *forest* wins."


def test_run_names_stay_as_written():
    assert parse_cell("# mlt: record name=1e3").directives[0].name == "1e3"


def test_directives_only_at_the_top():
    assert parse_cell("x = 1\n# mlt: skip").directives == ()
    assert parse_cell("# plain comment\n# mlt: skip").directives == ()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("# mlt: record", "needs name=NAME"),
        ("# mlt: record n=3", "needs name=NAME"),
        ("# mlt: record name=", "run name is empty"),
        ("# mlt: record name=a x", "expected key=value, got 'x'"),
        ("# mlt: record name=a name=b", "'name' given twice"),
        ('# mlt: record name="a', "unclosed quote"),
        ("# mlt: record stop now", "'record stop' takes no arguments"),
        ("# mlt: frobnicate", "unknown directive 'frobnicate'"),
        ("# mlt:", "empty directive"),
        ("# mlt: note colour=red", "'note' takes plot= and doc="),
        ("# mlt: note plot=", "plot= is empty"),
        ("# mlt: skip please", "'skip' takes no arguments"),
        ("# mlt: skip\n# mlt: skip", "'skip' given twice"),
        ("# mlt: note\n# mlt: record name=a", "cannot also be a run"),
        ("# mlt: record name=a 9x=1", "'9x' is not a valid name"),
    ],
)
def test_malformed_directives_are_one_line_errors(code, message):
    with pytest.raises(DirectiveError) as info:
        parse_cell(code)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
