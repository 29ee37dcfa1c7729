import math

from mmneurons.plugins.ui.units_table import merge_unit_rows, sort_rows, sortable_columns, unit_rows
from mmneurons.results import ProbeResult


def _result(probe, **tables):
    return ProbeResult(probe=probe, tables=tables)


def test_tables_merge_by_unit_and_clashing_columns_are_prefixed():
    modality = _result("modality", ranking=[{"unit": "l:1", "score": 2.0, "concept": "star"},
                                            {"unit": "l:0", "score": -math.inf, "concept": "moon"}])
    labels = _result("neuron_label", labels=[{"unit": "l:0", "label": "moon", "score": 0.5},
                                             {"unit": "l:2", "label": "ring", "score": 0.7}],
                     other=[{"no_unit": 1}])
    rows = merge_unit_rows({"modality": modality, "neuron_label": labels}, ["l:0", "l:1", "l:2"])
    assert rows == [
        {"unit": "l:0", "score": -math.inf, "concept": "moon", "label": "moon", "neuron_label:score": 0.5},
        {"unit": "l:1", "score": 2.0, "concept": "star"},
        {"unit": "l:2", "label": "ring", "neuron_label:score": 0.7},
    ]
    assert sortable_columns(rows) == ["score", "concept", "label", "neuron_label:score"]
    assert unit_rows(labels) == labels.tables["labels"]


def test_units_outside_the_fixed_list_are_dropped():
    result = _result("p", t=[{"unit": "l:9", "v": 1}, {"unit": "l:0", "v": 2}])
    assert merge_unit_rows({"p": result}, ["l:0"]) == [{"unit": "l:0", "v": 2}]
    assert merge_unit_rows({"p": result}) == [{"unit": "l:9", "v": 1}, {"unit": "l:0", "v": 2}]


def test_sorting_puts_missing_and_infinite_values_last_both_ways():
    rows = [{"unit": "a", "s": 1.0}, {"unit": "b"}, {"unit": "c", "s": 3.0}, {"unit": "d", "s": -math.inf},
            {"unit": "e", "s": float("nan")}, {"unit": "f", "s": 2}]
    assert [r["unit"] for r in sort_rows(rows, "s")] == ["c", "f", "a", "b", "d", "e"]
    assert [r["unit"] for r in sort_rows(rows, "s", descending=False)] == ["a", "f", "c", "b", "d", "e"]
    text = [{"unit": "a", "label": "moon"}, {"unit": "b", "label": "Arrow"}, {"unit": "c", "label": "star"}]
    assert [r["unit"] for r in sort_rows(text, "label", descending=False)] == ["b", "a", "c"]
    assert sort_rows(rows, None) == rows
