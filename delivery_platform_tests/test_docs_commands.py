"""Every shell command printed in README.md and docs/*.md runs as printed and succeeds.

The fenced shell blocks (```bash, ```sh, ```shell, ```console) are read from the Markdown and run,
in document order, by bash in a temporary project folder: the project's `.venv` (as `make install`
or `make demo` leave it), a `data/` folder holding a small seeded warehouse, the pinned clock
(conftest: DELIVERY_NOW) and no DAGSTER_HOME but the one the commands set themselves. A block that
cannot run on one machine (production hosts and credentials, `make dev`, which serves until
stopped, `make test`, which is this suite) carries `<!-- not run: why -->` on the line before it;
an unmarked block that looks like one of those fails the test instead of being skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from delivery_platform.settings import PROJECT_ROOT

SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(`{3,})\s*([\w-]*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<why>\S.*?)\s*-->$", re.DOTALL)
# commands that need more than one machine, a production account or never exit
CANNOT_RUN = re.compile(r"(^|[;&|]\s*|\s)(kubectl|helm|make\s+(dev|test)\b|ssh\s|sftp\s|dagster\s+dev\b)")
DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the reason given in the Markdown

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(PROJECT_ROOT)}:{self.line}"

    def script(self) -> str:
        """The commands as printed; for ```console, the `$ ` lines and their continuations only."""
        if self.lang != "console":
            return self.text
        out, continuing = [], False
        for line in self.text.splitlines():
            if line.startswith("$ ") or continuing:
                out.append(line[2:] if line.startswith("$ ") and not continuing else line)
                continuing = line.rstrip().endswith("\\")
        return "\n".join(out) + "\n"


def shell_blocks(path: Path) -> list[Block]:
    blocks, lines = [], path.read_text().splitlines()
    number = 0
    while number < len(lines):
        opened = FENCE.match(lines[number])
        if not opened:
            number += 1
            continue
        fence, lang, start = opened.group(1), opened.group(2).lower(), number
        number += 1
        body = []
        while number < len(lines) and not lines[number].startswith(fence):
            body.append(lines[number])
            number += 1
        number += 1
        if lang not in SHELL:
            continue
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        comment = [] if before < 0 or not lines[before].rstrip().endswith("-->") else [lines[before].strip()]
        while comment and not comment[0].startswith("<!--") and before > 0:  # a comment over several lines
            before -= 1
            comment.insert(0, lines[before].strip())
        mark = NOT_RUN.match(" ".join(comment))
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n", mark.group("why") if mark else None))
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in DOCS for b in shell_blocks(path)]


def test_blocks_are_found_and_marks_are_explained(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n```bash\necho one\n```\n<!-- not run: needs a cluster -->\n\n```sh\nkubectl get pods\n```\n"
                   "```\nnot shell\n```\n<!-- not run:\n  two lines -->\n````console\n$ echo two \\\n  three\noutput\n````\n")
    found = shell_blocks(doc)
    assert [(b.line, b.lang, b.not_run) for b in found] == [(2, "bash", None), (7, "sh", "needs a cluster"),
                                                            (15, "console", "two lines")]
    assert found[2].script() == "echo two \\\n  three\n"
    blocks = all_blocks()
    assert len(blocks) >= 5 and {b.path.name for b in blocks} >= {"README.md", "operating.md"}
    assert sum(b.not_run is None for b in blocks) >= 3, "most commands must run"


def test_no_unmarked_block_needs_what_one_machine_lacks():
    unmarked = [f"{b.where}: {line.strip()}" for b in all_blocks() if b.not_run is None
                for line in b.script().splitlines() if CANNOT_RUN.search(line.split("#")[0])]
    assert not unmarked, ("these commands cannot run in the test; mark their block with "
                          "`<!-- not run: why -->` or make them runnable:\n" + "\n".join(unmarked))


@pytest.fixture
def project(tmp_path, small_warehouse) -> tuple[Path, dict]:
    """A temporary project folder as a user has it after `make install`, with a small warehouse."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    for name in (".venv", "Makefile", "pyproject.toml", "workspace.yaml"):
        (root / name).symlink_to(PROJECT_ROOT / name)
    shutil.copy(small_warehouse, root / "data" / "warehouse.duckdb")
    home = root / "data" / "dagster_home"  # what `make install` creates
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DELIVERY_", "DAGSTER_", "ISPOT_", "LOTAME_", "OPTIMOVE_", "IDOMOO_", "ALERT_",
                                "DIGITAL_AUDIENCE_", "DRIFT_", "PREFLIGHT_", "VIRTUAL_ENV"))}
    env.update(DELIVERY_NOW=os.environ["DELIVERY_NOW"], DELIVERY_DATA_DIR=str(root / "data"),
               DELIVERY_RETRY_DELAY_SECONDS="0", PYTHONDONTWRITEBYTECODE="1")
    return root, env


def run_block(block: Block, root: Path, env: dict) -> subprocess.CompletedProcess:
    """The block's commands as one bash script; -e: the first failing command fails it, the trap names it."""
    script = "set -eo pipefail\ntrap 'echo \"FAILED: $BASH_COMMAND\" >&2' ERR\n" + block.script()
    return subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_a_failing_command_fails_its_block(project, tmp_path):
    """The runner cannot pass a broken example: the old backfill line of docs/operating.md fails."""
    root, env = project
    doc = tmp_path / "old.md"
    doc.write_text("```bash\nexport DAGSTER_HOME=$PWD/data/dagster_home\n"
                   ".venv/bin/dagster asset backfill -m delivery_platform.definitions --select 'group:lotame' "
                   "--from 2026-11-01 --to 2026-11-20\necho not reached\n```\n")
    done = run_block(shell_blocks(doc)[0], root, env)
    assert done.returncode != 0 and "not reached" not in done.stdout
    assert "FAILED: .venv/bin/dagster asset backfill" in done.stderr


def test_every_unmarked_command_runs_as_printed(project):
    root, env = project
    assert (PROJECT_ROOT / ".venv" / "bin" / "dagster").exists(), "run `make install` first"
    failures, ran = [], []
    for block in all_blocks():
        if block.not_run is not None:
            continue
        started = time.monotonic()
        done = run_block(block, root, env)
        ran.append(f"{block.where} {time.monotonic() - started:.0f}s")
        if done.returncode:
            failures.append(f"{block.where} exited {done.returncode}:\n{done.stderr[-3000:]}")
    print("\n".join(ran))
    assert ran, "no command was run"
    assert not failures, "\n\n".join(failures)
    # what the commands did is there: the runs are in the instance the docs told them to use
    assert (root / "data" / "dagster_home" / "history" / "runs.db").exists()
    assert (root / "data" / "ledger.sqlite").exists()
