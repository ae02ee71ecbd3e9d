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

from .validation.describe import check_text as _check
from .vendors import VENDORS

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- specs:start -->", "<!-- specs:end -->"


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
        models = vendor_models(vendor.name)
        parts.append(f"### {vendor.title}\n")
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
    print(f"wrote the spec tables of {', '.join(v.name for v in VENDORS)} into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
