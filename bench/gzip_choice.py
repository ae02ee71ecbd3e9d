"""Which deflate library the product's gzip paths use (issue 20 item 7), on evidence.

`python -m bench.gzip_choice FILE [FILE ...] [--repeat 3] [--threads 2]` gzips each file (a real part:
an iSpot CSV day, a Lotame JSON-lines day) with `ParallelGzip` and every deflate library at the
levels compared, and with `pigz -6 -p THREADS`, interleaved, and prints one JSON line per file:
median/min/max seconds, compressed bytes, ratio to pigz and whether the output decompresses
(Python's gzip) to the same bytes.

The rule the product default follows (formats/compress.py `DEFAULT_BACKEND`): among the outputs that
round-trip, the fastest whose size is within 2% of zlib -6's. Vendors size-split by compressed bytes
(Optimove's 100-250 MB band, Lotame's 5 GB), so a larger file is more parts and more transfer.
Measured on the 2-core machine (2 threads, median of 3; README "Benchmarks" item 7): ISA-L is the
fastest at every level but 37-42% larger on CSV and 15-16% on JSON lines, so it is not taken; zlib-ng
-6 is 1.7-2.1% smaller than zlib -6 and faster on the CSV day (0.78 s vs 1.13 s) and, in two runs of
three, on the JSON-lines day (1.67 s vs 2.44 s; 1.99 s vs 1.83 s in the other, on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from delivery_platform.core.files import file_md5
from delivery_platform.formats.compress import gzip_file

# (label, backend, level passed to ParallelGzip): ISA-L's levels 1, 2, 3 are zlib levels 1-3, 4-6, 7-9
CANDIDATES = [("zlib -6", "zlib", 6), ("zlib-ng -6", "zlib-ng", 6),
              ("isal 1", "isal", 1), ("isal 2", "isal", 6), ("isal 3", "isal", 9)]
SIZE_TOLERANCE = 0.02  # "not materially larger" than zlib -6


def measure_file(source: Path, repeat: int, threads: int) -> dict:
    raw_md5 = file_md5(source)
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.gz"
        for _ in range(repeat):
            one = {}
            for label, backend, level in CANDIDATES:
                started = time.perf_counter()
                gzip_file(source, target, level=level, threads=threads, backend=backend)
                one[label] = {"seconds": time.perf_counter() - started, "bytes": target.stat().st_size,
                              "valid": file_md5(target, gunzip=True) == raw_md5}
            started = time.perf_counter()
            with open(target, "wb") as out:
                subprocess.run(["pigz", "-6", "-p", str(threads), "-c", str(source)], stdout=out, check=True)
            one["pigz -6"] = {"seconds": time.perf_counter() - started, "bytes": target.stat().st_size, "valid": True}
            rounds.append(one)
    out: dict = {"file": source.name, "bytes_in": source.stat().st_size, "threads": threads, "repeat": repeat}
    for label in rounds[0]:
        secs = [r[label]["seconds"] for r in rounds]
        ratios = [r[label]["seconds"] / r["pigz -6"]["seconds"] for r in rounds]
        out[label] = {"median": round(statistics.median(secs), 3), "min": round(min(secs), 3),
                      "max": round(max(secs), 3), "bytes": rounds[0][label]["bytes"],
                      "valid": all(r[label]["valid"] for r in rounds),
                      "over_pigz": round(statistics.median(ratios), 3),
                      "size_vs_zlib6": round(rounds[0][label]["bytes"] / rounds[0]["zlib -6"]["bytes"], 4)}
    eligible = [label for label, _, _ in CANDIDATES
                if out[label]["valid"] and out[label]["size_vs_zlib6"] <= 1 + SIZE_TOLERANCE]
    out["chosen"] = min(eligible, key=lambda label: out[label]["median"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    for source in args.files:
        print(json.dumps(measure_file(source, args.repeat, args.threads)), flush=True)


if __name__ == "__main__":
    main()
