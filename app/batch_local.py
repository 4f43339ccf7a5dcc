"""A batch on this machine: N worker processes, each with its model loaded once, fed one video
at a time. No Ray needed.

A worker process that dies (killed, out of memory, a crash in native code) costs only the video
it held: that video is given to a fresh worker up to MAX_ATTEMPTS times in all, then reported
failed; the other workers carry on. Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole
process group, and the driver alone decides how the batch stops (by setting `stop`). SIGTERM and
SIGHUP (which `timeout`, systemd and `kill -- -PGID` send to the whole group) are not left to
kill a worker: they stop its current video as a stop from the driver does (outputs closed
complete with the frames done), and the worker then exits. A worker whose driver is gone (killed
with -9) does the same: it never outlives its batch.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
from collections import deque
from dataclasses import dataclass

from .batch_manifest import VideoResult
from .batch_plan import VideoJob
from .batch_worker import VideoWorker, WorkerConfig
from .signals import TERMINATION_SIGNALS

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3       # per video, when its worker process dies under it
POLL_S = 0.2


PARENT_CHECK_S = 1.0   # how often an idle worker checks that its driver is still there


class _WorkerState:
    """What a worker process knows of its own end: a stop signal it received, or a driver gone."""

    def __init__(self):
        self.parent = os.getppid()
        self.signalled = False

    def on_signal(self, signum, frame) -> None:
        self.signalled = True

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def ending(self) -> bool:
        return self.signalled or self.orphaned()


class _QueueChannel:
    def __init__(self, events, stop, slot: int, state: _WorkerState):
        self.events, self.stop, self.slot = events, stop, slot
        self.state = state

    def started(self, job: VideoJob, frame_count: int | None) -> None:
        self.events.put(("started", self.slot, job.index, frame_count))

    def frames_done(self, job: VideoJob, count: int) -> None:
        self.events.put(("frames", self.slot, job.index, count))

    def stop_requested(self) -> bool:
        return self.stop.is_set() or self.state.ending()


def _worker_main(config: WorkerConfig, slot: int, gpu: int | None, inbox, events, stop) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = _WorkerState()
    for sig in TERMINATION_SIGNALS:
        signal.signal(sig, state.on_signal)
    if gpu is not None:   # before torch starts CUDA: this worker sees its GPU as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    worker = VideoWorker(config)
    channel = _QueueChannel(events, stop, slot, state)
    try:
        while not state.ending():
            try:
                job = inbox.get(timeout=PARENT_CHECK_S)
            except queue.Empty:
                continue
            if job is None:
                return
            events.put(("result", slot, job.index, worker.process(job, channel)))
    finally:
        worker.close()


@dataclass
class _Slot:
    process: mp.Process
    inbox: object
    gpu: int | None
    job: VideoJob | None = None


class LocalRunner:
    """runner.run(jobs, listener): listener.started(job, frames), .frames_done(job, n),
    .finished(job, result) are called on this (the driver's main) thread."""

    def __init__(self, config: WorkerConfig, workers: int, gpus: list[int] | None = None):
        self.config = config
        self.workers = workers
        self.gpus = gpus or []
        self._ctx = mp.get_context("spawn")   # no fork of a process that holds threads
        self._events = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self.fatal_error: str | None = None
        self.interrupted = False

    def _start(self, index: int) -> _Slot:
        gpu = self.gpus[index % len(self.gpus)] if self.gpus else None
        inbox = self._ctx.Queue()
        process = self._ctx.Process(target=_worker_main, name=f"batch worker {index}",
                                    args=(self.config, index, gpu, inbox, self._events, self._stop),
                                    daemon=True)
        process.start()
        return _Slot(process, inbox, gpu)

    def run(self, jobs: list[VideoJob], listener) -> None:
        pending = deque(jobs)
        attempts: dict[int, int] = {}
        by_index = {job.index: job for job in jobs}
        slots = [self._start(i) for i in range(min(self.workers, len(jobs)))]
        stopping = False
        try:
            while True:
                try:
                    if not stopping:
                        for slot in slots:
                            if slot.job is None and pending:
                                slot.job = pending.popleft()
                                slot.inbox.put(slot.job)
                    if not any(slot.job for slot in slots) and (stopping or not pending):
                        break
                    self._handle_events(slots, by_index, listener)
                    for i, slot in enumerate(slots):
                        if slot.process.is_alive():
                            continue
                        if slot.job is not None:   # its last result may have come after the wait above
                            self._handle_events(slots, by_index, listener, wait=False)
                        if slot.job is not None:
                            job, slot.job = slot.job, None
                            attempts[job.index] = attempts.get(job.index, 0) + 1
                            if attempts[job.index] < MAX_ATTEMPTS and not stopping:
                                log.warning("a worker died (exit code %s) on %s: trying again",
                                            slot.process.exitcode, job.relative)
                                pending.appendleft(job)
                            else:
                                listener.finished(job, VideoResult(
                                    job.input, "interrupted" if stopping else "failed",
                                    error=f"its worker process died {attempts[job.index]} times "
                                          f"(last exit code {slot.process.exitcode})"))
                        if pending and not stopping:
                            slots[i] = self._start(i)
                except KeyboardInterrupt:
                    if stopping:
                        raise   # a second Ctrl-C: do not wait any longer
                    stopping = self.interrupted = True
                    self._stop.set()
                if self.fatal_error is not None and not stopping:
                    stopping = True
                    self._stop.set()
        finally:
            self._shut_down(slots, by_index, listener)
        for job in pending:
            listener.finished(job, VideoResult(job.input, "pending"))

    def _handle_events(self, slots, by_index, listener, wait: bool = True) -> None:
        try:
            event = self._events.get(timeout=POLL_S) if wait else self._events.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, slot_index, job_index, value = event
            job = by_index[job_index]
            if kind == "started":
                listener.started(job, value)
            elif kind == "frames":
                listener.frames_done(job, value)
            elif kind == "result":
                slot = slots[slot_index]
                if slot.job is not None and slot.job.index == job_index:
                    slot.job = None
                if value.fatal and self.fatal_error is None:
                    self.fatal_error = value.error
                if not value.fatal:
                    listener.finished(job, value)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return

    def _shut_down(self, slots, by_index, listener) -> None:
        """Let idle workers exit; after a second Ctrl-C, end busy ones too (their files stay
        hidden temporary files: nothing half-written takes an output's name)."""
        for slot in slots:
            if slot.process.is_alive() and slot.job is None:
                slot.inbox.put(None)
        for slot in slots:
            if slot.job is not None:
                slot.process.terminate()
                listener.finished(slot.job, VideoResult(slot.job.input, "interrupted",
                                                        error="stopped by a second Ctrl-C"))
                slot.job = None
        for slot in slots:
            slot.process.join(timeout=10)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
