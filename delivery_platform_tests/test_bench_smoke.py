"""`python -m bench.run --quick` runs end to end and reports real numbers (no timing asserted):
every measurement of issue 20 on a 10,000-row day, including a run launched with `dagster job
execute`; the backfill launched through the webserver's GraphQL API and the daemon is `make bench`'s
only (test_browser_launch.py launches one through the daemon in the suite)."""

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
    for row in ("1. run overhead", "2. backfill launched", "3. iSpot end to end", "4. naive path", "5. memory",
                "6. peer: dlt", "6. peer: sling", "7. gzip", "definitions load", "Idomoo sensor tick", "PURL file",
                "Lotame daily job"):
        line = next(ln for ln in table.splitlines() if row in ln)
        assert re.search(r"\d+\.\d+ s|not installable|not measured", line), line
        assert line.rstrip().endswith("|") and line.count("|") == 7, line
    launched = next(ln for ln in table.splitlines() if "1. run overhead" in ln)
    assert re.search(r"launched warm \d+\.\d+ s \(run itself \d+\.\d+ s; warm process start", launched), launched
    assert re.search(r"launched cold \d+\.\d+ s \(run itself \d+\.\d+ s\)", launched), launched
    assert re.search(r"warm/in process \d+\.\d+×; cold/in process \d+\.\d+×", launched), launched
    backfill = next(ln for ln in table.splitlines() if "2. backfill launched" in ln)
    # --quick leaves the daemon out (test_browser_launch launches a backfill through it); the in-process one runs
    assert "not measured in --quick; in process" in backfill and "with 0 failed" in backfill, backfill
    gzip = next(ln for ln in table.splitlines() if "7. gzip" in ln)
    assert "INVALID" not in gzip and all(lib in gzip for lib in ("zlib ", "pigz")), gzip
    lotame = next(ln for ln in table.splitlines() if "Lotame daily job" in ln)
    assert "first day comprehensive, second delta; both delivered" in lotame, lotame
