"""`python -m delivery_platform receipt <vendor> <partition>`: print a delivery receipt (JSON).

The receipt is read from beside the ledger (DELIVERY_LEDGER_PATH or data/ledger.sqlite); answers
the vendor sent since (Idomoo's PURL file, dA's matches) are brought up to date first. A vendor
with several deliverables (Optimove) prints a JSON list unless `--deliverable` picks one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from . import receipts
    from .ledger import Ledger
    from .vendors import VENDORS

    vendors = sorted(v.name for v in VENDORS)
    parser = argparse.ArgumentParser(prog="python -m delivery_platform")
    commands = parser.add_subparsers(dest="command", required=True)
    receipt = commands.add_parser("receipt", help="print the delivery receipt of a vendor's partition (JSON)")
    receipt.add_argument("vendor", choices=vendors)
    receipt.add_argument("partition", help="the partition, e.g. 2026-11-19")
    receipt.add_argument("--deliverable", help="one deliverable of the vendor (e.g. customers for optimove)")
    receipt.add_argument("--out", type=Path, help="write the JSON to this file instead of printing it")
    args = parser.parse_args(argv)

    ledger = Ledger()
    entry = next(v for v in VENDORS if v.name == args.vendor)
    chosen = [d for d in entry.deliverables if args.deliverable in (None, d.name)]
    if not chosen:
        parser.error(f"{args.vendor} has no deliverable {args.deliverable!r}: "
                     f"{', '.join(d.name for d in entry.deliverables)}")
    docs = receipts.load(ledger, chosen, args.partition)
    if not docs:
        print(
            f"no receipt for {args.vendor} {args.partition}"
            f"{' ' + args.deliverable if args.deliverable else ''} under {receipts.receipts_dir(ledger)}: "
            "was the partition delivered?",
            file=sys.stderr,
        )
        return 1
    text = json.dumps(docs[0] if len(docs) == 1 else docs, indent=1, default=str) + "\n"
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
