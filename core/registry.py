"""The plugin manager: built-ins and ``mmneurons`` entry points, loaded with errors isolated.

Built-in plugins (``mmneurons.plugins.DEFAULT_PLUGINS``) are registered through exactly the same
path as third-party ones. A plugin that fails to import, misspells a hook or raises inside a hook
is reported (plugin, distribution, version, error) and skipped; everything else keeps working.

Environment:
    MMNEURONS_STRICT_PLUGINS=1       re-raise plugin errors instead of reporting them
    MMNEURONS_DISABLE_PLUGINS=a,b    do not load the plugins named a and b
    MMNEURONS_LOAD_ENTRYPOINTS=0     load only the built-in plugins (used by the test suite)
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pluggy

from . import hookspecs
from .kinds import HOOK_KINDS

ENTRY_POINT_GROUP = "mmneurons"


class PluginError(RuntimeError):
    """An error caused by a plugin; the message names the plugin."""


class UnknownPluginError(KeyError):
    """No plugin object of that kind has that name; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class PluginProblem:
    """A reported plugin error: who caused it, where, and what it was."""

    plugin: str
    error: str
    hook: str | None = None
    distribution: str | None = None
    version: str | None = None
    traceback: str = ""

    def __str__(self) -> str:
        where = f" in hook {self.hook}" if self.hook else ""
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"plugin '{self.plugin}'{dist}{where}: {self.error}"


@dataclass
class PluginInfo:
    """One registered (or failed) plugin, as ``mmneurons plugins`` lists it."""

    name: str
    module: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


class PluginRegistry:
    """A pluggy manager plus what the loading found: the sources and the problems of each plugin."""

    def __init__(
        self,
        *,
        builtins: bool = True,
        entry_points: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.strict = _env_flag(env, "MMNEURONS_STRICT_PLUGINS")
        self.disabled = {n.strip() for n in env.get("MMNEURONS_DISABLE_PLUGINS", "").split(",") if n.strip()}
        if entry_points is None:
            entry_points = _env_flag(env, "MMNEURONS_LOAD_ENTRYPOINTS", default=True)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self._info: dict[str, PluginInfo] = {}
        for name in self.disabled:
            self.pm.set_blocked(name)
        if builtins:
            from mmneurons.plugins import DEFAULT_PLUGINS

            for name, module_name in DEFAULT_PLUGINS.items():
                self._load_module(name, module_name, builtin=True)
        if entry_points:
            self._load_entry_points()

    # -- loading ---------------------------------------------------------------------------------
    def _report(self, problem: PluginProblem, exc: BaseException | None = None) -> None:
        if self.strict:
            raise PluginError(str(problem)) from exc
        key = (problem.plugin, problem.hook, problem.error)
        if any((p.plugin, p.hook, p.error) == key for p in self.problems):
            return  # hooks are collected on every look-up: report each problem once
        self.problems.append(problem)
        info = self._info.get(problem.plugin)
        if info is not None:
            info.errors.append(str(problem.error) if problem.hook is None else f"{problem.hook}: {problem.error}")

    def _load_module(self, name: str, module_name: str, *, builtin: bool, dist: Any = None) -> None:
        info = PluginInfo(
            name=name,
            module=module_name,
            builtin=builtin,
            distribution=getattr(dist, "name", None) if dist else ("mmneurons" if builtin else None),
            version=getattr(dist, "version", None) if dist else (_own_version() if builtin else None),
        )
        self._info[name] = info
        if self.pm.is_blocked(name):
            info.errors.append("disabled by MMNEURONS_DISABLE_PLUGINS")
            return
        try:
            plugin = importlib.import_module(module_name) if isinstance(module_name, str) else module_name
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - an import failure, or a plugin's sys.exit(), is isolated
            self._report(self._problem(info, f"error importing plugin: {_describe(exc)}", exc), exc)
            return
        self.register(plugin, name=name, _info=info)

    def _load_entry_points(self) -> None:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                builtin=False,
                distribution=getattr(dist, "name", None),
                version=getattr(dist, "version", None),
            )
            if ep.name in self._info:  # the second of two: listed (and blamed) under its own name
                kept = self._info[ep.name]
                info.name = f"{ep.name} ({info.distribution or ep.value})"
                self._info.setdefault(info.name, info)
                self._report(
                    self._problem(info, f"a plugin named '{ep.name}' is already registered (from "
                                        f"{kept.distribution or kept.module}); this one was not loaded: "
                                        f"rename its entry point"),
                )
                continue
            self._info[ep.name] = info
            if self.pm.is_blocked(ep.name):
                info.errors.append("disabled by MMNEURONS_DISABLE_PLUGINS")
                continue
            try:
                plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - sys.exit() at import included
                self._report(self._problem(info, f"error importing plugin: {_describe(exc)}", exc), exc)
                continue
            self.register(plugin, name=ep.name, _info=info)

    def register(self, plugin: Any, name: str | None = None, *, _info: PluginInfo | None = None) -> str | None:
        """Register a plugin (a module or an object with hook implementations).

        Misspelled hook implementations (``mmneurons_*`` names with no specification) and bad
        signatures are reported and the plugin is left out.
        """
        name = name or getattr(plugin, "__name__", None) or repr(plugin)
        info = _info or self._info.setdefault(
            name, PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)), builtin=False)
        )
        self._info[name] = info
        try:
            registered = self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy's validation errors and name clashes
            self._report(self._problem(info, f"{type(exc).__name__}: {exc}", exc), exc)
            return None
        if registered is None:  # blocked
            info.errors.append("disabled by MMNEURONS_DISABLE_PLUGINS")
            return None
        unknown = [c.name for c in self.pm.get_hookcallers(plugin) or [] if c.spec is None]
        if unknown:
            self.pm.unregister(plugin)
            hint = "; ".join(_suggest(u, self.hook_names()) for u in unknown)
            self._report(self._problem(info, f"unknown hook implementation(s): {hint}"))
            return None
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        return name

    def unregister(self, name: str) -> None:
        """Remove a plugin by name (tests use this to clean up fake plugins)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self._info.pop(name, None)
        self.problems = [p for p in self.problems if p.plugin != name]

    @staticmethod
    def _problem(info: PluginInfo, error: str, exc: BaseException | None = None,
                 hook: str | None = None) -> PluginProblem:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc else ""
        return PluginProblem(info.name, error, hook, info.distribution, info.version, tb)

    # -- querying --------------------------------------------------------------------------------
    def hook_names(self) -> list[str]:
        return list(HOOK_KINDS)

    def collect(self, hook: str) -> list[Any]:
        """Call every implementation of ``hook`` on its own and merge the plugin objects.

        A raising implementation is reported and skipped; an object whose name is already taken
        within its kind is reported, naming both plugins, and the first one registered is kept.
        """
        if hook not in HOOK_KINDS:
            raise KeyError(f"unknown hook {hook!r}; hooks: {', '.join(HOOK_KINDS)}")
        caller = getattr(self.pm.hook, hook)
        seen: dict[str, str] = {}
        objects: list[Any] = []
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            info = self._info.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", False)
            try:
                returned = impl.function()
                if not isinstance(returned, (list, tuple)):
                    raise TypeError(f"returned {_short(returned)} instead of a list of {HOOK_KINDS[hook]} objects")
                returned = list(returned)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a raising hook, sys.exit() or garbage
                self._report(self._problem(info, _describe(exc), exc, hook), exc)
                continue
            for obj in returned:
                try:
                    obj_name = getattr(obj, "name", None)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - a ``name`` property that raises
                    self._report(self._problem(info, f"returned {_short(obj)}, whose 'name' raised {_describe(exc)}",
                                               exc, hook))
                    continue
                if not isinstance(obj_name, str) or not obj_name:
                    self._report(self._problem(info, f"returned {_short(obj)}, which has no 'name'", hook=hook))
                    continue
                if obj_name in seen:
                    self._report(self._problem(
                        info,
                        f"{HOOK_KINDS[hook]} '{obj_name}' is provided by both plugin '{seen[obj_name]}' "
                        f"and plugin '{impl.plugin_name}'; keeping the one from '{seen[obj_name]}'",
                        hook=hook,
                    ))
                    continue
                seen[obj_name] = impl.plugin_name
                try:  # who provided it, for error messages
                    obj.provided_by = impl.plugin_name
                except AttributeError:  # frozen or slotted objects keep their own identity
                    pass
                objects.append(obj)
        return objects

    def get(self, hook: str, name: str) -> Any:
        """The plugin object called ``name`` from ``hook``; a clear error lists the known names."""
        objects = self.collect(hook)
        for obj in objects:
            if obj.name == name:
                return obj
        known = [o.name for o in objects]
        raise UnknownPluginError(f"no {HOOK_KINDS[hook]} named '{name}'; {_suggest_names(name, known)}")

    def plugins(self, include_builtins: bool = True) -> list[PluginInfo]:
        """Registered and failed plugins, built-ins first."""
        rows = [i for i in self._info.values() if include_builtins or not i.builtin]
        return sorted(rows, key=lambda i: (not i.builtin, i.name))

    # convenience accessors, one per kind
    def model_providers(self) -> list[Any]:
        return self.collect("mmneurons_model_providers")

    def image_sources(self) -> list[Any]:
        return self.collect("mmneurons_image_sources")

    def visualizers(self) -> list[Any]:
        return self.collect("mmneurons_visualizers")

    def attributors(self) -> list[Any]:
        return self.collect("mmneurons_attributors")

    def probes(self) -> list[Any]:
        return self.collect("mmneurons_probes")

    def renderers(self) -> list[Any]:
        return self.collect("mmneurons_renderers")

    def sae_sources(self) -> list[Any]:
        return self.collect("mmneurons_saes")

    def commands(self) -> list[Any]:
        return self.collect("mmneurons_commands")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _short(obj: Any) -> str:
    """A plugin's object for an error message, the same on every call (problems are reported once
    each): no memory address, and never a raising or huge repr."""
    if type(obj).__repr__ is object.__repr__:
        return f"<{type(obj).__qualname__} object>"
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a plugin's broken __repr__ must not hide its real error
        text = f"<{type(obj).__qualname__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"'{name}' (did you mean '{close[0]}'?)" if close else f"'{name}'"


def _suggest_names(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}known: {', '.join(known) or 'none'}"


def _own_version() -> str:
    from . import __version__

    return __version__


_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide plugin registry, loaded on first use (the only global mutable state)."""
    global _registry
    if _registry is None:
        _registry = PluginRegistry()
    return _registry


def reset_registry(registry: PluginRegistry | None = None) -> None:
    """Replace the process-wide registry (``None``: reload on next use). For tests and the app."""
    global _registry
    _registry = registry
