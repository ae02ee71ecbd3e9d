"""A run worker for the two-worker test: one "node" (its own data folder and Dagster home, named by
DELIVERY_NODE_NAME) that runs the partitions it is handed, one at a time, in its own process.

Protocol: one JSON request per line on stdin, {"id", "job", "partition", "now"} (`now`: the pinned
clock of that run, as a daily run happens the morning after its day); one JSON answer per line
on the original stdout, {"id", "ok", "error", "actions"}. Dagster's own output goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _messages(error) -> str:
    """An error's message and its causes' (a retried failure wraps the real one)."""
    out = []
    while error is not None:
        out.append(str(error.message).strip())
        error = error.cause
    return " <- ".join(out)


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by the runs goes to stderr, never into the answers
    import dagster as dg

    from delivery_platform.definitions import build_defs

    defs = build_defs("local")
    # the node's own instance, in memory: the ledger, not Dagster's run history, is what nodes share
    instance = dg.DagsterInstance.ephemeral()
    answers.write(json.dumps({"ready": os.environ.get("DELIVERY_NODE_NAME")}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        os.environ["DELIVERY_NOW"] = request["now"]
        result = defs.resolve_job_def(request["job"]).execute_in_process(
            partition_key=request["partition"], instance=instance, raise_on_error=False)
        actions = {}
        for event in result.all_events:
            if event.is_step_materialization:
                materialization = event.event_specific_data.materialization
                action = materialization.metadata.get("delivery_action")
                if action is not None:
                    actions[materialization.asset_key.to_user_string()] = action.value
        # a step's failures, including those its retry policy retried ("Exceeded max_retries" says little)
        errors = [_messages(e.event_specific_data.error) for e in result.all_events
                  if (e.is_step_failure or e.is_step_up_for_retry) and e.event_specific_data.error is not None]
        answers.write(json.dumps({"id": request["id"], "ok": result.success, "error": " | ".join(errors)[:2000],
                                  "actions": actions, "seconds": round(time.monotonic() - started, 2)}) + "\n")


if __name__ == "__main__":
    main()
