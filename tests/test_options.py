"""Options built from a plugin's Params: the parameters of the plugin a command picks, by name."""

from __future__ import annotations

import click
from click.testing import CliRunner

from mmneurons.kinds import Probe
from mmneurons.options import PLUGIN_VALUES, PluginCommand, merge_values, param_option, pick_first_argument
from mmneurons.params import Param


class _Fake(Probe):
    name = "fake"
    params = (Param("steps", "int", 512, min=1, max=4096, help="optimization steps"),
              Param("mode", "str", "a", choices=("a", "b"), help="which mode"),
              Param("loud", "bool", False, help="say more"),
              Param("label", "str", None, help="required label"),
              Param("out", "str", "x", help="clashes with the command's own --out"))


def _command(seen: dict) -> click.Command:
    @click.command(cls=PluginCommand, hook="mmneurons_probes", pick=pick_first_argument)
    @click.argument("name")
    @click.option("--out", default=None)
    @click.option("-p", "pairs", multiple=True)
    def cmd(name, out, pairs, **options):
        seen.update(merge_values(options[PLUGIN_VALUES], dict(p.split("=") for p in pairs)))

    return cmd


def test_options_of_the_named_plugin_carry_only_what_was_typed(registry):
    from mmneurons.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def mmneurons_probes(self):
            return [_Fake()]

    registry.register(Plugin(), name="fake_plugin")
    seen: dict = {}
    runner = CliRunner()
    out = runner.invoke(_command(seen), ["fake", "--steps", "8", "--mode", "b", "--loud", "-p", "label=x"])
    assert out.exit_code == 0, out.output
    assert seen == {"steps": 8, "mode": "b", "loud": True, "label": "x"}  # defaults are left to the plugin
    bad = runner.invoke(_command({}), ["fake", "--steps", "0"])
    assert bad.exit_code == 2 and "1<=x<=4096" in bad.output
    text = " ".join(runner.invoke(_command({}), ["fake", "--help"]).output.split())
    assert "--steps INTEGER RANGE optimization steps [default: 512; 1<=x<=4096]" in text
    assert "--mode [a|b]" in text and "--loud / --no-loud" in text
    assert text.count("--out") == 1  # a parameter named like the command's own option stays -p only
    nothing = runner.invoke(_command({}), ["other", "--steps", "1"])
    assert nothing.exit_code == 2 and "No such option '--steps'" in nothing.output


def test_first_argument_skips_options_and_their_values():
    cmd = _command({})
    assert pick_first_argument(["--out", "dir", "-p", "a=1", "fake", "model"], cmd) == "fake"
    assert pick_first_argument(["--steps=3", "fake"], cmd) == "fake"
    assert pick_first_argument(["--out"], cmd) is None


def test_param_option_for_a_plain_command():
    option = param_option(Param("k", "int", 4, min=2, max=64, help="images per unit"))
    assert option.name == "k" and option.default == 4 and option.required is False
    assert param_option(Param("path", "str")).required is True
