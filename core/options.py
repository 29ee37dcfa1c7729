"""Command-line options built from a plugin's :class:`~mmneurons.params.Param` list.

``mmneurons visualize``, ``probe`` and ``attribute`` pick a plugin by name (``--method``, or the
probe's NAME); :class:`PluginCommand` finds that name in the arguments before parsing them and
adds one option per parameter of that plugin (``--steps 64``), with its help, default and bounds
in ``--help``. ``-p NAME=VALUE`` stays as the generic form; a parameter given both ways is an error.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import click

from .params import Param

#: where the generated options' values travel to the command (a dict, parameter name -> value)
PLUGIN_VALUES = "plugin_values"


def param_option(param: Param, *, dest: str | None = None) -> click.Option:
    """A click option for a plugin :class:`Param`, with its default, bounds or choices and help
    (the value is checked again by the plugin's ``resolve``)."""
    flag = "--" + param.name.replace("_", "-")
    shown = param.default is not None
    default = param.default
    if param.type == "bool":
        return click.Option([f"{flag}/--no-{param.name.replace('_', '-')}", dest or param.name], default=default,
                            show_default=shown, help=param.help)
    kind: Any = {"int": int, "float": float, "str": str}[param.type]
    if param.choices is not None:
        kind = click.Choice([str(c) for c in param.choices])
        default = None if default is None else str(default)
    elif param.type in ("int", "float") and (param.min is not None or param.max is not None):
        kind = (click.IntRange if param.type == "int" else click.FloatRange)(param.min, param.max)
    required = dest is None and param.default is None and not param.optional  # else -p may give it
    return click.Option([flag, dest or param.name], type=kind, default=default, show_default=shown,
                        required=required, help=param.help)


def _option_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _first_argument(args: Sequence[str], command: click.Command) -> str | None:
    """The first positional argument: the command's own options are skipped with their values;
    an option it does not know (a plugin's, not added yet) is taken to have a value."""
    flags = {n for p in command.params if isinstance(p, click.Option) and p.is_flag for n in p.opts}
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-") and arg != "-":
            skip = "=" not in arg and arg not in flags
        else:
            return arg
    return None


class PluginCommand(click.Command):
    """A command whose options include the parameters of the plugin it runs.

    ``hook`` is the hook the plugin comes from; ``pick(args, command)`` says which plugin the
    arguments name (None: the default, ``default``). Options that would clash with the command's
    own are left out (``-p`` still sets them)."""

    def __init__(self, *args: Any, hook: str, pick: Callable[[Sequence[str], click.Command], str | None],
                 default: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook, self.pick, self.default = hook, pick, default
        self.own_params = list(self.params)
        self.shown: Any = None  # the plugin whose options were added by the last parse
        self.generated: list[str] = []

    def plugin(self, args: Sequence[str]) -> Any:
        from .registry import UnknownPluginError, get_registry

        name = self.pick(args, self) or self.default
        if not name:
            return None
        try:
            return get_registry().get(self.hook, name)
        except UnknownPluginError:
            return None  # the command says so, with the known names, when it runs

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self.params = list(self.own_params)  # the options of an earlier call's plugin go
        plugin = self.plugin(args)
        taken = {n for p in self.own_params for n in list(p.opts) + list(getattr(p, "secondary_opts", []))}
        taken |= {p.name for p in self.own_params}
        generated = []
        for param in getattr(plugin, "params", ()) or ():
            option = param_option(param, dest=f"{PLUGIN_VALUES}__{param.name}")
            if not (set(option.opts) | set(option.secondary_opts)) & taken:
                generated.append(option)
        self.params, self.shown = self.own_params + generated, plugin
        self.generated = [option.opts[0] for option in generated]
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if plugin is not None:
                from .kinds import HOOK_KINDS

                exc.message = (f"{exc.message.rstrip('.')}: {HOOK_KINDS[self.hook].replace('_', ' ')} "
                               f"'{plugin.name}' takes {', '.join(self.generated) or 'no parameters'}")
            raise

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from .kinds import HOOK_KINDS

        kind = HOOK_KINDS[self.hook].replace("_", " ")
        formatter.write_paragraph()
        if self.shown is None:
            formatter.write_text(f"Each {kind} has parameters of its own: name one to see them here as options "
                                 f"(`mmneurons plugins --params` lists them all).")
        else:
            names = ", ".join(self.generated) or "none"
            hidden = [p.name for p in self.shown.params if "--" + p.name.replace("_", "-") not in self.generated]
            only_p = f"; with -p only (the command has an option of that name): {', '.join(hidden)}" if hidden else ""
            formatter.write_text(f"Parameters of {kind} '{self.shown.name}' (options, or -p NAME=VALUE): "
                                 f"{names}{only_p}. Name another {kind} to see its own.")

    def invoke(self, ctx: click.Context) -> Any:
        prefix = f"{PLUGIN_VALUES}__"
        given = {}
        for key in [k for k in ctx.params if k.startswith(prefix)]:
            value = ctx.params.pop(key)
            if ctx.get_parameter_source(key) is not click.core.ParameterSource.DEFAULT:
                given[key[len(prefix):]] = value  # typed on the command line: defaults stay the plugin's
        ctx.params[PLUGIN_VALUES] = given
        return super().invoke(ctx)


def merge_values(options: dict[str, Any], pairs: dict[str, str]) -> dict[str, Any]:
    """Parameter values from generated options and from ``-p NAME=VALUE``; one name given both
    ways is a usage error."""
    both = sorted(set(options) & set(pairs))
    if both:
        raise click.UsageError(f"parameter(s) {', '.join(both)} given both as an option and with -p; give each once")
    return {**pairs, **options}


def pick_option(*names: str) -> Callable[[Sequence[str], click.Command], str | None]:
    """A ``pick`` for :class:`PluginCommand`: the value of an option such as ``--method``."""
    return lambda args, command: _option_value(args, names)


def pick_first_argument(args: Sequence[str], command: click.Command) -> str | None:
    """A ``pick`` for :class:`PluginCommand`: the first positional argument (``probe NAME``)."""
    return _first_argument(args, command)
