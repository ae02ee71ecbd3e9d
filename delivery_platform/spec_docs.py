"""The README's spec tables, generated from the vendors' pandera models.

Each vendor's `spec.py` holds its pandera models; this module renders them as markdown, so the
table a reader sees is the rule the platform enforces, never a retyped copy.
`python -m delivery_platform.spec_docs` rewrites the README between `<!-- specs:start -->` and
`<!-- specs:end -->`; a test fails when the README and the models disagree.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pandera.pandas as pa

from .resources import VENDORS

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- specs:start -->", "<!-- specs:end -->"
TITLES = {"lotame": "Lotame Spherical", "ispot": "iSpot.tv", "optimove": "Optimove",
          "digital_audience": "digitalAudience", "idomoo": "Idomoo"}


def vendor_models(vendor: str) -> list[type[pa.DataFrameModel]]:
    """The DataFrameModels defined in `vendors/<vendor>/spec.py`, in source order."""
    try:
        module = importlib.import_module(f"delivery_platform.vendors.{vendor}.spec")
    except ModuleNotFoundError:
        return []
    models = [obj for obj in vars(module).values()
              if inspect.isclass(obj) and issubclass(obj, pa.DataFrameModel) and obj is not pa.DataFrameModel
              and obj.__module__ == module.__name__]
    return sorted(models, key=lambda m: inspect.getsourcelines(m)[1])


def _stat(value) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        shown = ", ".join(f"`{v}`" for v in items[:8])
        return shown + (f" … ({len(items)} values)" if len(items) > 8 else "")
    return f"`{value}`"


def _check(check: pa.Check) -> str:
    stats = {k: v for k, v in (check.statistics or {}).items() if v is not None}
    if not stats:
        return check.name or "custom"
    if len(stats) == 1:
        return f"{check.name} {_stat(next(iter(stats.values())))}"
    return f"{check.name} (" + ", ".join(f"{k}={_stat(v)}" for k, v in stats.items()) + ")"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def model_table(model: type[pa.DataFrameModel]) -> str:
    schema = model.to_schema()
    doc = inspect.getdoc(model) or ""
    lines = [f"**{model.__name__}**" + (f" — {_cell(doc.splitlines()[0])}" if doc else ""), "",
             "| field | type | required | rules | meaning / document |", "|---|---|---|---|---|"]
    for name, column in schema.columns.items():
        rules = [_check(c) for c in column.checks]
        if column.unique:
            rules.insert(0, "unique")
        required = "yes" if not column.nullable else "may be empty"
        if not column.required:
            required = "optional column"
        lines.append(f"| `{name}` | {column.dtype} | {required} | {_cell('; '.join(rules)) or '—'} | "
                     f"{_cell(column.description or column.title or '')} |")
    frame_rules = [_check(c) for c in schema.checks]
    if frame_rules:
        lines.append("")
        lines.append("Row rules: " + _cell("; ".join(frame_rules)) + ".")
    flags = [f for f, on in (("strict: no other columns", schema.strict), ("ordered columns", schema.ordered)) if on]
    if flags:
        lines.append("")
        lines.append("File rules: " + ", ".join(flags) + ".")
    return "\n".join(lines) + "\n"


def render() -> str:
    parts = []
    for vendor in VENDORS:
        models = vendor_models(vendor)
        parts.append(f"### {TITLES[vendor]}\n")
        if not models:
            parts.append("_No spec model yet._\n")
        for model in models:
            parts.append(model_table(model))
    return "\n".join(parts)


def splice(text: str, body: str, start: str = START, end: str = END) -> str:
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    if not rest:
        raise ValueError(f"README has no {start} marker")
    return f"{head}{start}\n{body}{end}{tail}"


def main() -> int:
    README.write_text(splice(README.read_text(), render()))
    print(f"wrote the spec tables of {', '.join(VENDORS)} into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
