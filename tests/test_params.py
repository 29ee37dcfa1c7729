"""Declarative parameters: conversion and validation."""

from __future__ import annotations

import pytest

from mmneurons.params import Param, ParamError, resolve_params

PARAMS = (
    Param("steps", "int", 512, min=1, max=4096, help="optimization steps"),
    Param("lr", "float", 0.02, min=0.0, help="learning rate"),
    Param("method", "str", "channel", choices=("channel", "neuron"), help="objective"),
    Param("alpha", "bool", False, help="transparency"),
    Param("label", "str", None, optional=True),
)


def test_defaults_are_filled():
    assert resolve_params(PARAMS) == {"steps": 512, "lr": 0.02, "method": "channel", "alpha": False, "label": None}


def test_strings_from_the_command_line_are_converted():
    got = resolve_params(PARAMS, {"steps": "64", "lr": "0.5", "alpha": "yes"})
    assert (got["steps"], got["lr"], got["alpha"]) == (64, 0.5, True)


@pytest.mark.parametrize("values, message", [
    ({"steps": 0}, "parameter 'steps' got 0; allowed: an int between 1 and 4096"),
    ({"steps": "many"}, "parameter 'steps' got 'many'; allowed: an int"),
    ({"steps": 2.5}, "parameter 'steps' got 2.5"),
    ({"lr": -1}, "parameter 'lr' got -1.0; allowed: a float >= 0.0"),
    ({"method": "pixel"}, "parameter 'method' got 'pixel'; allowed: one of 'channel', 'neuron'"),
    ({"alpha": "maybe"}, "parameter 'alpha' got 'maybe'"),
    ({"stpes": 3}, "unknown parameter(s) of vis: stpes; known: alpha, label, lr, method, steps"),
])
def test_bad_values_give_one_clear_error(values, message):
    with pytest.raises(ParamError) as err:
        resolve_params(PARAMS, values, owner="vis")
    assert message in str(err.value)


def test_required_parameter():
    with pytest.raises(ParamError, match="parameter 'path' is required"):
        resolve_params([Param("path", "str")], {})


def test_default_from_names_a_known_source():
    assert Param("labels", "str", default_from="categories").default_from == "categories"
    with pytest.raises(ValueError, match="default_from must be one of"):
        Param("labels", "str", default_from="the weather")
