"""One package per vendor; each exposes `build_defs(env) -> dagster.Definitions`.

A vendor package holds what its document says (spec.py: the pandera models and constants)
and the assets that apply it (assets.py). Shared machinery lives outside `vendors/`.
"""
