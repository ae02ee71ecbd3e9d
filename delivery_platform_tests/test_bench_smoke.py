"""`python -m bench.run --quick` runs end to end and reports real numbers (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_harness_runs_and_reports_every_measurement():
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--no-readme"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout[done.stdout.index("| what |"):]
    for row in ("iSpot end-to-end", "bare DuckDB COPY", "naive", "memory flatness", "definitions load",
                "Idomoo sensor tick", "PURL file", "backfill", "Lotame daily job"):
        line = next(ln for ln in table.splitlines() if row in ln)
        assert re.search(r"\d+\.\d+ s", line), line
    assert "0 failed runs" in table
    lotame = next(ln for ln in table.splitlines() if "Lotame daily job" in ln)
    assert "first day comprehensive, second delta; both delivered" in lotame, lotame
