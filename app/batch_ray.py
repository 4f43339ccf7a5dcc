"""A batch on a Ray cluster (or a Ray instance on this machine): one actor per worker holds the
model, declared with the CPUs (and GPU) it uses, and each video is one task on an actor.

Ray restarts an actor whose process dies and retries the task it was running, MAX_RETRIES times;
after that the video is reported failed and a fresh actor takes its place. The code (app/,
models/) is shipped to the workers with the job (runtime_env py_modules); the inputs, the model
file and --out-dir must be on storage every node sees, which is checked before any video runs.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Iterator

from .batch_manifest import VideoResult
from .batch_plan import VideoJob
from .batch_worker import REPORT_EVERY_S, VideoWorker, WorkerConfig
from .errors import UserError
from .signals import TERMINATION_SIGNALS

log = logging.getLogger(__name__)

INSTALL_COMMAND = "pip install -r requirements-cluster.txt"
MAX_RETRIES = 2          # actor restarts and task retries after a worker process dies
POLL_S = 0.25
PROJECT = Path(__file__).resolve().parent.parent


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {INSTALL_COMMAND}") from None
    return ray


CONNECT_TIMEOUT_S = 5.0   # for something to answer at a given HOST:PORT before Ray tries (for minutes)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A given HOST:PORT (or ray://HOST:PORT) must answer a TCP connection within `timeout`:
    otherwise ray.init would wait silently for minutes."""
    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return   # not HOST:PORT: Ray says what is wrong with it
    host = host.strip("[]") or "127.0.0.1"
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError, OverflowError) as error:
        reason = "nothing answered in time" if isinstance(error, socket.timeout) else \
            (getattr(error, "strerror", None) or str(error) or type(error).__name__)
        raise UserError(f"cannot connect to the Ray cluster at '{address}': {reason} (is Ray "
                        "running there? start it with `ray start --head`, or use --ray auto).") from None


def connect(address: str):
    """Join the cluster at `address`; 'auto': the cluster this machine is part of (`ray start`),
    else a Ray instance started here for this batch."""
    ray = import_ray()
    if address != "auto":
        check_reachable(address)
    options = dict(runtime_env={"py_modules": [str(PROJECT / "app"), str(PROJECT / "models")]},
                   logging_level=logging.ERROR, log_to_driver=True)
    try:
        if address == "auto":
            try:
                _init(ray, address="auto", **options)
            except ConnectionError:
                with _deaf_to_group_stops():
                    _init(ray, include_dashboard=False, **options)
        else:
            _init(ray, address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot connect to the Ray cluster at '{address}': "
                        f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    return ray


def _init(ray, **options) -> None:
    """ray.init, keeping the command's SIGTERM and SIGHUP handlers (app/signals.py): ray.init
    puts its own on SIGTERM in the driver (Python's: stop Ray's processes and exit 1; its core
    worker's: log and abort), and the command's go back even when it fails, before a signal
    held back meanwhile (_deaf_to_group_stops) is delivered, so that SIGTERM and SIGHUP stop
    the batch as Ctrl-C does."""
    ours = _stop_handlers()
    try:
        ray.init(**options)
    finally:
        for sig, handler in ours.items():
            signal.signal(sig, handler)


def _stop_handlers() -> dict:
    """The handlers of SIGTERM and SIGHUP now (the command's), where they can be put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {sig: signal.getsignal(sig) for sig in TERMINATION_SIGNALS}
    return {sig: handler for sig, handler in handlers.items() if handler is not None}


@contextlib.contextmanager
def _deaf_to_group_stops() -> Iterator[None]:
    """SIGTERM and SIGHUP blocked on this thread while it starts a Ray instance here: its
    processes (GCS, raylet, and through the raylet the workers) inherit the signal mask, so a
    stop sent to the whole process group (`timeout`, systemd, a closed terminal) reaches only
    the driver, which stops the workers after their frame, as Ctrl-C does (Ray blocks SIGINT
    in them itself). Unblocked, the signal killed Ray under the running video: its outputs lost,
    the driver aborted. A signal to the driver meanwhile waits until the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(TERMINATION_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _probe_node(marker: str, token: str, model: str | None) -> tuple[str, str | None]:
    """On one node: can it read the driver's marker in --out-dir, write there, and see the model?"""
    host = socket.gethostname()
    folder = os.path.dirname(marker)
    try:
        with open(marker) as f:
            if f.read() != token:
                return host, f"'{folder}' there is another folder than the driver's"
    except OSError:
        return host, f"cannot see '{folder}'"
    probe = os.path.join(folder, f".batch-write-{secrets.token_hex(4)}")
    try:
        with open(probe, "w") as f:
            f.write(token)
        os.remove(probe)
    except OSError as error:
        return host, f"cannot write to '{folder}' ({error.strerror or error})"
    if model and not os.path.isfile(model):
        return host, f"cannot see the model '{model}'"
    return host, None


def check_shared_storage(ray, out_dir: Path, model: str | None) -> int:
    """Every live node must see --out-dir (and the model file): the number of nodes checked."""
    token = secrets.token_hex(8)
    marker = out_dir / f".batch-visible-{token}"
    marker.write_text(token)
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        probe = ray.remote(num_cpus=0)(_probe_node)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker), token, model) for n in nodes]
        problems = [f"node {host}: {problem}" for host, problem in ray.get(refs, timeout=120) if problem]
    finally:
        marker.unlink(missing_ok=True)
    if problems:
        raise UserError("--out-dir must be a folder every node of the cluster sees (shared storage "
                        "such as NFS, mounted at the same path): " + "; ".join(problems) + ".")
    return len(nodes)


class Coordinator:
    """The driver's side of the conversation with the actors: frame counts in, a stop flag out.
    Runs as a zero-CPU actor."""

    def __init__(self):
        self.stop = False
        self.events: list[tuple] = []

    def started(self, job_index: int, frame_count: int | None) -> None:
        self.events.append(("started", job_index, frame_count))

    def frames_done(self, job_index: int, count: int) -> bool:
        self.events.append(("frames", job_index, count))
        return self.stop

    def request_stop(self) -> None:
        self.stop = True

    def stop_requested(self) -> bool:
        return self.stop

    def take_events(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class _CoordinatorChannel:
    def __init__(self, coordinator):
        self.coordinator = coordinator
        self._stop = False
        self._checked = 0.0

    def started(self, job: VideoJob, frame_count: int | None) -> None:
        self._stop, self._checked = False, 0.0
        self.coordinator.started.remote(job.index, frame_count)

    def frames_done(self, job: VideoJob, count: int) -> None:
        import ray
        self._stop = ray.get(self.coordinator.frames_done.remote(job.index, count))
        self._checked = time.monotonic()

    def stop_requested(self) -> bool:
        if not self._stop and time.monotonic() - self._checked >= REPORT_EVERY_S:
            import ray
            self._stop = ray.get(self.coordinator.stop_requested.remote())
            self._checked = time.monotonic()
        return self._stop


class RayVideoWorker:
    """The actor: the model is loaded in __init__, once per worker (and again if Ray restarts
    the actor after its process died)."""

    def __init__(self, config: WorkerConfig, coordinator_name: str):
        import ray
        self.worker = VideoWorker(config)
        self.channel = _CoordinatorChannel(ray.get_actor(coordinator_name))

    def process(self, job: VideoJob) -> VideoResult:
        return self.worker.process(job, self.channel)


class RayRunner:
    """Same contract as LocalRunner.run."""

    def __init__(self, ray, config: WorkerConfig, workers: int, gpus_per_worker: float = 0.0):
        self.ray = ray
        self.config = config
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.fatal_error: str | None = None
        self.interrupted = False

    def _new_actor(self, coordinator_name: str):
        # By name, not by handle: an actor that Ray may restart must not take object-store
        # arguments (they could be gone by then).
        actor_class = self.ray.remote(max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(RayVideoWorker)
        return actor_class.options(num_cpus=self.config.threads, num_gpus=self.gpus_per_worker) \
            .remote(self.config, coordinator_name)

    def run(self, jobs: list[VideoJob], listener) -> None:
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        name = f"batch-coordinator-{secrets.token_hex(6)}"
        coordinator = ray.remote(num_cpus=0)(Coordinator).options(name=name).remote()
        by_index = {job.index: job for job in jobs}
        pending = deque(jobs)
        idle = [self._new_actor(name) for _ in range(min(self.workers, len(jobs)))]
        inflight: dict = {}
        stopping = False
        while True:
            try:
                while idle and pending and not stopping:
                    actor, job = idle.pop(), pending.popleft()
                    inflight[actor.process.remote(job)] = (actor, job)
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
                self._relay(ray.get(coordinator.take_events.remote()), by_index, listener)
                for ref in ready:
                    actor, job = inflight.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayActorError as error:   # died more than MAX_RETRIES times
                        actor = self._new_actor(name)
                        result = VideoResult(job.input, "failed",
                                             error=f"its worker died {MAX_RETRIES + 1} times ({_first_line(error)})")
                    except RayTaskError as error:
                        result = VideoResult(job.input, "failed", error=_first_line(error))
                    idle.append(actor)
                    if result.fatal:
                        self.fatal_error = self.fatal_error or result.error
                        stopping = True
                        continue
                    listener.finished(job, result)
                if self.fatal_error is not None and not stopping:   # e.g. the manifest cannot be written
                    stopping = True
                    coordinator.request_stop.remote()
            except KeyboardInterrupt:
                if stopping and self.interrupted:   # a second Ctrl-C: do not wait any longer
                    for _, job in inflight.values():
                        listener.finished(job, VideoResult(job.input, "interrupted",
                                                           error="stopped by a second Ctrl-C"))
                    raise
                stopping = self.interrupted = True
                coordinator.request_stop.remote()
        self._relay(ray.get(coordinator.take_events.remote()), by_index, listener)
        for job in pending:
            listener.finished(job, VideoResult(job.input, "pending"))

    @staticmethod
    def _relay(events, by_index, listener) -> None:
        for kind, job_index, value in events:
            job = by_index[job_index]
            if kind == "started":
                listener.started(job, value)
            else:
                listener.frames_done(job, value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cluster_resources(ray) -> tuple[int, int]:
    """(CPUs, GPUs) of the whole cluster."""
    resources = ray.cluster_resources()
    return int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
