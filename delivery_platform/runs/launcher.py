"""`WarmRunLauncher`: runs start from a process that has already imported Dagster and the code location.

Dagster's default run launcher starts every run in a new Python process, which imports Dagster
(~0.8 s here) and loads the code location (~1.5 s) before the run's first step: on a 1.3 s daily
run that start-up is most of the wall time. This launcher keeps one *warm process* per launching
process (the daemon, or the webserver without a queue): started once with `python -m
delivery_platform.runs.launcher <modules>`, it imports `preload_modules` and then forks one child
per run. The child does what `dagster api execute_run` does (dagster/_cli/api.py): it opens the
instance from its ref, loads the job from `run.job_code_origin` (already imported, so this is
cheap) and executes it; events and logs go to the instance as with any launcher.

Named in deploy/dagster.yaml and in the instance `make dev` writes (docs/operating.md, "Warm run launcher"):

    run_launcher:
      module: delivery_platform.runs.launcher
      class: WarmRunLauncher
      config:
        preload_modules: [delivery_platform.definitions]

What to know:
- Environment: a run sees the environment of the launching process as it was when the warm process
  started (DELIVERY_NOW, secrets, destinations). The warm process is restarted when that
  environment changes, or when a `.py` file of a preloaded package changes (`restart_on_change`,
  a stat of each file per launch, ~2 ms): a deploy needs no restart of the daemon, and a run never
  executes code older than the files on disk. Runs already going keep their process and code.
- A run whose `executable_path` is another Python, a warm process that cannot start (an import
  error in the code location), and runs without a code origin fall back to a cold
  `dagster api execute_run` process, as the default launcher would start; the run's event log says so.
- The warm process dies with the launching process (EOF on its stdin); runs it forked go on to their
  end. If it crashes, the next launch starts a new one.
- `terminate` signals the run's process (SIGTERM, which Dagster turns into an interrupt: the run
  stops and marks itself canceled), from any process of this host (the pid is a run tag); one that
  has not stopped after `terminate_grace_seconds` is killed and the run is marked canceled.
- Concurrent launches (the queue's 8) are serialized only for the fork itself (milliseconds).

The launcher API (RunLauncher, ConfigurableClass, the run-execution body of `dagster api execute_run`)
is not exported by `dagster`: the private imports below are pinned by the exact dagster version.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import dagster as dg
from dagster._cli.api import _execute_run_command_body
from dagster._core.instance import InstanceRef
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils.interrupts import capture_interrupts

DEFAULT_PRELOAD = ["delivery_platform.definitions"]
PID_TAG = "delivery/run_worker_pid"  # the run's process
HOST_TAG = "delivery/run_worker_host"
PARENT_TAG = "delivery/run_worker_parent"  # the warm process it was forked from (absent: a cold start)
WARM_START = "Warm start"  # the engine event a forked run begins with


class WarmServerError(RuntimeError):
    pass


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run as a fork of a warm process that has imported `preload_modules`."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload_modules: list[str] | None = None,
                 restart_on_change: bool = True, terminate_grace_seconds: float = 20.0):
        self._inst_data = inst_data
        self.preload_modules = list(preload_modules or DEFAULT_PRELOAD)
        self.restart_on_change = restart_on_change
        self.terminate_grace_seconds = terminate_grace_seconds
        self._lock = threading.Lock()  # one request at a time on the warm process's pipe
        self._server: subprocess.Popen | None = None
        self._server_fingerprint: str | None = None
        self._import_env: set[str] = set()  # variables the preloaded imports set themselves (pandera does)
        self._cold: dict[str, subprocess.Popen] = {}  # runs started as their own process (the fallback)
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {
            "preload_modules": dg.Field([str], is_required=False, default_value=DEFAULT_PRELOAD),
            "restart_on_change": dg.Field(bool, is_required=False, default_value=True),
            "terminate_grace_seconds": dg.Field(float, is_required=False, default_value=20.0),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    # --- the warm process ----------------------------------------------------------------------
    def warm(self) -> int:
        """Start the warm process now (else the first launch does) and wait until it has preloaded;
        returns its pid."""
        with self._lock:
            return self._ensure_server().pid

    def _fingerprint(self) -> str:
        """What the warm process's code and environment were made from: the interpreter, the
        environment (but the variables the preloaded imports set), and the path, size and mtime of
        every .py file of the preloaded packages."""
        digest = hashlib.sha256(sys.executable.encode())
        for key, value in sorted(os.environ.items()):  # hashed, never kept or logged
            if key not in self._import_env:
                digest.update(f"{key}={value}\0".encode())
        for top in sorted({m.split(".")[0] for m in self.preload_modules}):
            spec = importlib.util.find_spec(top)  # a top-level name: found without importing it
            for folder in (spec.submodule_search_locations or []) if spec else []:
                for path in sorted(Path(folder).rglob("*.py")):
                    stat = path.stat()
                    digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
        return digest.hexdigest()

    def _ensure_server(self) -> subprocess.Popen:
        fingerprint = self._fingerprint() if self.restart_on_change else ""
        server = self._server
        if server and server.poll() is None and fingerprint == self._server_fingerprint:
            return server
        self._stop_server()  # none yet, crashed, or stale (code or environment changed)
        server = subprocess.Popen([sys.executable, "-m", __name__, *self.preload_modules],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._server, self._server_fingerprint = server, fingerprint
        server.stdin.write(dg.serialize_value(self._instance.get_ref()) + "\n")  # opened once there (below)
        server.stdin.flush()
        ready = self._answer(server, timeout=300)
        if not ready.get("ready"):
            self._stop_server()
            raise WarmServerError(f"the warm process did not start: {ready}")
        if set(ready["import_env"]) - self._import_env:
            self._import_env |= set(ready["import_env"])
            self._server_fingerprint = self._fingerprint() if self.restart_on_change else ""
        return server

    def _answer(self, server: subprocess.Popen, timeout: float) -> dict:
        if not select.select([server.stdout], [], [], timeout)[0]:
            raise WarmServerError(f"the warm process (pid {server.pid}) did not answer within {timeout:.0f} s")
        line = server.stdout.readline()
        if not line:
            raise WarmServerError(f"the warm process (pid {server.pid}) exited: see the launching process's log")
        return json.loads(line)

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.stdin.close()  # EOF: it exits; the runs it forked go on
            server.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()
            server.wait(timeout=5)
        server.stdout.close()

    def _fork(self, run_id: str) -> tuple[int, int]:
        request = json.dumps({"run_id": run_id, "instance_ref": dg.serialize_value(self._instance.get_ref())})
        with self._lock:
            for attempt in (1, 2):  # a warm process that died since the last launch is replaced once
                server = self._ensure_server()
                try:
                    server.stdin.write(request + "\n")
                    server.stdin.flush()
                    return self._answer(server, timeout=60)["pid"], server.pid
                except (OSError, WarmServerError):
                    if attempt == 2:
                        raise
                    self._stop_server()
        raise AssertionError("unreachable")

    # --- RunLauncher -----------------------------------------------------------------------------
    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise dg.DagsterInvariantViolationError(f"run {run.run_id} has no job code origin to load")
        parent = None
        if os.path.abspath(origin.executable_path) == os.path.abspath(sys.executable):
            try:
                pid, parent = self._fork(run.run_id)
            except (WarmServerError, OSError) as exc:  # OSError: a broken pipe to a warm process that died
                self._instance.report_engine_event(f"Warm run launcher: {exc}; starting the run cold",
                                                   run, cls=self.__class__)
                pid = self._start_cold(run)
        else:  # the run's code lives in another Python: what the default launcher would start
            pid = self._start_cold(run)
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid), HOST_TAG: socket.gethostname(),
                                                 **({PARENT_TAG: str(parent)} if parent else {})})

    def _start_cold(self, run) -> int:
        from dagster._grpc.types import ExecuteRunArgs

        args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
        # the run's own Python (`args.get_command_args()` would name a bare `dagster`, found on PATH or not)
        process = subprocess.Popen([run.job_code_origin.executable_path, "-m", "dagster", "api", "execute_run",
                                    dg.serialize_value(args)])
        self._cold[run.run_id] = process
        return process.pid

    def _worker_alive(self, run) -> bool | None:
        """Whether the run's process is alive; None when it is not this host's to tell."""
        pid = int(run.tags.get(PID_TAG) or 0)
        if not pid or run.tags.get(HOST_TAG) != socket.gethostname():
            return None
        if run.run_id in self._cold:
            return self._cold[run.run_id].poll() is None
        try:  # the pid is still a run worker (a zombie or a reused pid is not)
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return __name__.encode() in command or b"execute_run" in command

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        alive = self._worker_alive(run)
        if alive is None:
            self._instance.report_engine_event("Warm run launcher: the run's process is not on this host",
                                               run, cls=self.__class__)
            return False
        if not alive:
            self._instance.report_run_canceled(run, "The run's process had already exited.")
            return True
        pid = int(run.tags[PID_TAG])
        try:
            os.kill(pid, signal.SIGTERM)  # Dagster turns it into an interrupt: the run marks itself canceled
        except ProcessLookupError:  # it ended meanwhile: the thread below marks the run if it did not
            pass
        threading.Thread(target=self._kill_if_stuck, args=(run_id, pid), daemon=True).start()
        return True

    def _kill_if_stuck(self, run_id: str, pid: int) -> None:
        deadline = time.monotonic() + self.terminate_grace_seconds
        while time.monotonic() < deadline:
            run = self._instance.get_run_by_id(run_id)
            if run is None or not self._worker_alive(run):
                break
            time.sleep(0.2)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run = self._instance.get_run_by_id(run_id)
        if run and not run.is_finished:
            self._instance.report_run_canceled(
                run, f"The run's process (pid {pid}) was killed or ended without finishing the run.")

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        alive = self._worker_alive(run)
        if alive is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run worker of this host recorded")
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=run.tags.get(PID_TAG))
        cold = self._cold.get(run.run_id)
        if cold is not None and cold.returncode:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process exited with {cold.returncode}")
        run = self._instance.get_run_by_id(run.run_id) or run
        if run.is_finished:
            return CheckRunHealthResult(WorkerStatus.SUCCESS if run.status == dg.DagsterRunStatus.SUCCESS
                                        else WorkerStatus.FAILED)
        return CheckRunHealthResult(WorkerStatus.FAILED, "the run's process exited without finishing the run")

    def dispose(self) -> None:
        with self._lock:
            self._stop_server()


# --- inside the warm process -------------------------------------------------------------------
def serve(preload: list[str]) -> None:
    """Import `preload`, open the instance of the first line on stdin once (its storage modules cost
    ~1 s on first use), say ready, then fork one child per request line on stdin until EOF."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what imported code or a run prints goes to stderr, never into the protocol
    started, environ = time.perf_counter(), dict(os.environ)
    for name in preload:
        importlib.import_module(name)
    import_env = sorted(k for k in {*environ, *os.environ} if environ.get(k) != os.environ.get(k))
    with dg.DagsterInstance.from_ref(dg.deserialize_value(sys.stdin.readline(), InstanceRef)) as instance:
        instance.get_runs(limit=1)  # closed again before any fork: the runs open their own
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the runs: no zombies
    gc.freeze()  # the preloaded objects leave the collector's view: a run's collections do not copy their pages
    protocol.write(json.dumps({"ready": True, "pid": os.getpid(), "seconds": time.perf_counter() - started,
                               "threads": threading.active_count(), "import_env": import_env}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request, protocol, preload)
        protocol.write(json.dumps({"pid": pid}) + "\n")


def _child(request: dict, protocol, preload: list[str]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run's own subprocesses must be waitable
        protocol.close()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        code = _execute(request["run_id"], request["instance_ref"], preload)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # not the warm process's atexit handlers


def _execute(run_id: str, instance_ref: str, preload: list[str]) -> int:
    """What `dagster api execute_run` does for a run (dagster/_cli/api.py `execute_run_command`)."""
    with capture_interrupts(), dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref, InstanceRef)) as instance:
        run = instance.get_run_by_id(run_id)
        instance.report_engine_event(f"{WARM_START}: forked from the warm process {os.getppid()}, which had "
                                     f"imported {', '.join(preload)}", run)
        try:
            return _execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)
        except Exception:
            run = instance.get_run_by_id(run_id)
            if run and not run.is_finished:  # e.g. the job could not be loaded: fail the run, not leave it STARTING
                instance.report_engine_event("The run could not start:\n" + traceback.format_exc(), run)
                instance.report_run_failed(run)
            raise


if __name__ == "__main__":
    serve(sys.argv[1:])
