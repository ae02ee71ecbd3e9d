"""Collects the fault-injection and hostile-input cases into a report table (issue 10).

Tests tag themselves with `@pytest.mark.fault(target, case, outcome)`; at the end of the session
the outcome of each tagged test is written to `test-artifacts/fault-report.md` (and `.json`).
`make fault-report` copies that table into the README between its markers, so the README
shows what the suite actually ran, not what someone typed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("DELIVERY_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
_cases: dict[str, dict] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fault(target, case, outcome): a fault-injection or hostile-input case for the README table")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # read the marker after the test body ran (parametrized cases add theirs there); the
    # user_properties travel with the report, so this also works under pytest-xdist
    if call.when == "call" and not any(key == "fault" for key, _ in item.user_properties):
        marker = item.get_closest_marker("fault")
        if marker is not None:
            target, case, outcome = (list(marker.args) + ["", "", ""])[:3]
            callspec = getattr(item, "callspec", None)
            if callspec is not None and target == "all stores":
                target = callspec.id
            item.user_properties.append(("fault", {"target": target, "case": case, "outcome": outcome}))
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    fault = dict(report.user_properties).get("fault")
    if fault is None:
        return
    if report.when == "call" or report.outcome != "passed":
        result = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}[report.outcome]
        if report.when == "teardown" and report.outcome == "failed":
            result = "FAIL (teardown)"
        _cases[report.nodeid] = {**fault, "test": report.nodeid, "result": result}


def render(cases: list[dict]) -> str:
    lines = ["| target | fault or input | outcome asserted | result |", "|---|---|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")  # a `|` in a case (=cmd|...) would split the cell

    for c in sorted(cases, key=lambda c: (c["target"], c["case"])):
        lines.append(f"| {cell(c['target'])} | {cell(c['case'])} | {cell(c['outcome'])} | {c['result']} |")
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session):
    ran = list(_cases.values())
    if not ran or hasattr(session.config, "workerinput"):  # xdist workers report to the controller
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "fault-report.json").write_text(json.dumps(ran, indent=1))
    (ARTIFACTS / "fault-report.md").write_text(render(ran))


def main() -> int:
    """Copy the last run's table into the README (`make fault-report`)."""
    from delivery_platform.spec_docs import README, splice

    report = ARTIFACTS / "fault-report.json"
    if not report.exists():
        print(f"{report} does not exist: run `make test` first")
        return 1
    cases = json.loads(report.read_text())
    failed = sum(1 for c in cases if c["result"] != "pass")
    summary = f"{len(cases)} cases, {len(cases) - failed} passed, {failed} not passed.\n\n"
    README.write_text(splice(README.read_text(), summary + render(cases), "<!-- faults:start -->",
                             "<!-- faults:end -->"))
    print(f"README: {summary.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
