"""Plugins: what is installed, which hooks each implements, and every load or hook error."""

import streamlit as st

from mmneurons.kinds import HOOK_KINDS
from mmneurons.plugins.ui import state

st.title("Plugins")


def takes(obj) -> str:
    """What a plugin object works on, as the pages use it: targets and source, or a result kind."""
    if getattr(obj, "result_kind", ""):
        return f"results of kind {obj.result_kind}"
    parts = [" / ".join(obj.targets)] if getattr(obj, "targets", None) else []
    if getattr(obj, "kind", "") == "probe":
        parts.append(f"source: {obj.source}")
    return "; ".join(parts)


registry = state.registry()
objects = {hook: registry.collect(hook) for hook in HOOK_KINDS}  # collecting also surfaces hook errors
infos = registry.plugins()
st.dataframe([{"plugin": i.name, "built-in": i.builtin, "package": i.distribution or "mmneurons",
               "version": i.version or "", "module": i.module, "hooks": ", ".join(i.hooks),
               "errors": len(i.errors)} for i in infos], hide_index=True, width="stretch")
st.caption("Third-party packages add plugins through the `mmneurons` entry-point group; "
           "MMNEURONS_DISABLE_PLUGINS=name,... turns plugins off.")

st.markdown("#### Problems")
if not registry.problems:
    st.success("Every plugin loaded and every hook answered.")
for problem in registry.problems:
    st.error(str(problem))
    if problem.traceback:
        with st.expander(f"traceback ({problem.plugin})"):
            st.code(problem.traceback, language="text")

st.markdown("#### What they provide")
for hook, kind in HOOK_KINDS.items():
    items = objects[hook]
    with st.expander(f"{kind}s ({len(items)})", expanded=False):
        st.dataframe([{"name": getattr(o, "name", ""), "plugin": getattr(o, "provided_by", ""),
                       "description": (getattr(o, "description", None) or getattr(o, "help", None) or ""),
                       "takes": takes(o),
                       "parameters": ", ".join(p.name for p in getattr(o, "params", ()) or ())}
                      for o in items], hide_index=True, width="stretch")
