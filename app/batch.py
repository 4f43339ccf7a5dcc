"""`run_demo.py batch`: the 3D joints (and annotated videos) of many videos, on this machine's
cores and GPUs or on a Ray cluster.

    python run_demo.py batch videos/ --out-dir results/
    python run_demo.py batch "videos/**/*.mp4" --out-dir results/ --no-video --export-format csv
    python run_demo.py batch list.txt --out-dir /shared/results --ray auto

Each video runs through the single run's frame loop (frame_loop.py, built by run.py) in a worker that keeps its
model loaded. The manifest (OUT/batch.csv) says what happened to each video; a later run skips
the ones finished with the same settings, and refuses (without --force) to redo those finished
with other settings or from a video changed since. Exit status: 0 all done, 1 some failed
(listed), 2 bad arguments, 128 + the signal's number when stopped (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .batch_manifest import (FINISHED, MANIFEST_NAME, NotAManifest, VideoResult, changed_since,
                             input_stamp, is_finished, made_with, read_manifest, write_manifest)
from .batch_lock import OutDirLock
from .batch_plan import VideoJob, find_videos, plan_jobs
from .batch_worker import WorkerConfig
from .cli import OneLineParser, add_processing_options, print_report, processing_settings
from .errors import UserError
from .formats import READABLE_VIDEO_EXTENSIONS
from .command_scope import command_scope
from .settings import InputSettings, Settings, ViewSettings
from .signals import exit_code_for, stop_exit_code
from models.cores import usable_cores

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("json", "csv", "npz")
# A worker's frame loop already overlaps decoding, inference and encoding on threads of its own
# (and x264 encodes on several): on 2 cores one worker with 2 threads ran 1.4x the frames of two
# workers with 1 each (docs/benchmarks.md). So by default a worker per 2 cores, not per core.
CORES_PER_WORKER = 2


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="run_demo.py batch",
        description="Process many videos: per video, the joints export and the annotated video, "
                    "under --out-dir with the inputs' relative paths. Finished videos are skipped "
                    "on the next run with the same settings; the manifest OUT/batch.csv lists "
                    "every video's outcome.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a folder (searched recursively), a quoted glob ('videos/**/*.mp4'), a "
                        "text file listing videos (.txt, one path per line), or a video")
    p.add_argument("--out-dir", "-o", required=True, metavar="DIR", help="where the outputs and the manifest go")
    p.add_argument("--export-format", choices=EXPORT_FORMATS, default="json", help="joints file format (default: json)")
    p.add_argument("--no-video", dest="video", action="store_false", help="only the joints, no annotated video")
    p.add_argument("--ext", metavar="LIST", help="video extensions to look for in folders and globs, "
                                                 "e.g. mp4,mov (default: every video type OpenCV reads)")
    p.add_argument("--force", action="store_true", help="redo videos that an earlier run finished, and replace "
                                                            "existing files where outputs go")
    p.add_argument("--dry-run", action="store_true",
                   help="list the videos that would be processed, and where their outputs go; process nothing")
    p.add_argument("--workers", type=int, metavar="N",
                   help=f"videos processed at once (default: one per GPU; without GPUs, one per "
                        f"{CORES_PER_WORKER} cores, or per --cpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=int, metavar="K",
                   help=f"CPU threads each worker uses (default: the cores divided among the workers; "
                        f"on Ray, the CPUs each worker declares: {CORES_PER_WORKER})")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on Ray: 'auto' joins the cluster this machine belongs to (or starts "
                        "Ray here), or give the head's address, e.g. 10.0.0.1:6379")
    add_processing_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def resolve_model(model: str | None) -> str:
    """An absolute checkpoint path (workers may run elsewhere), or 'blazepose'."""
    from .backends import FALLBACK, find_checkpoint, missing_weights_notice
    if model is not None and model.lower() == FALLBACK:
        return FALLBACK
    if model is None:
        found = find_checkpoint()
        if found is None:
            log.info(missing_weights_notice())
            return FALLBACK
        return str(found.resolve())
    path = Path(model).expanduser()
    if not path.is_file():
        raise UserError(f"model '{model}' does not exist.")
    # checked here, as a single run checks it, not first by a worker after the plan is printed
    from models import CheckpointError, load_convnextpose
    try:
        load_convnextpose(path)
    except CheckpointError as error:
        raise UserError(str(error)) from None
    return str(path.resolve())


def local_gpus(model: str, device: str) -> int:
    if model == "blazepose" or device == "cpu":
        return 0
    import torch
    count = torch.cuda.device_count()
    if device == "cuda" and count == 0:
        raise UserError("--device cuda, but no CUDA GPU is visible; use --device cpu or auto")
    return count


class BatchProgress:
    """One bar over the videos for the whole batch, with the frames done (of those known: a
    video's count is known once a worker has opened it) and the frame rate of all workers."""

    def __init__(self, total: int, enabled: bool, on_result):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True,
                        disable=not enabled or None, mininterval=0.5)
        self.lines = self.bar.disable   # without a bar (no terminal), one line per video
        self.expected: dict[int, int | None] = {}
        self.done: dict[int, int] = {}
        self.started_at = time.monotonic()
        self.on_result = on_result

    def started(self, job: VideoJob, frames: int | None) -> None:
        self.expected[job.index] = frames
        self.done[job.index] = 0   # a retried video starts over
        self._postfix()

    def frames_done(self, job: VideoJob, count: int) -> None:
        self.done[job.index] = self.done.get(job.index, 0) + count
        self._postfix()

    def finished(self, job: VideoJob, result: VideoResult) -> None:
        self.on_result(job, result)
        if result.status != "pending":
            self.bar.update(1)
        if result.status not in ("ok", "pending") or self.lines:
            text = f"{result.status}: {job.relative}"
            text += f" ({result.frames} frames, {result.fps:.1f} fps)" if result.frames else ""
            text += f": {result.error}" if result.error else ""
            self.bar.write(text, file=sys.stderr)

    def _postfix(self) -> None:
        done = sum(self.done.values())
        known = [n for n in self.expected.values() if n]
        rate = done / max(1e-6, time.monotonic() - self.started_at)
        frames = f"{done}/{sum(known)}" if known else str(done)
        self.bar.set_postfix_str(f"frames {frames}, {rate:.1f} fps", refresh=False)

    def close(self) -> None:
        self.bar.close()


def main(argv: list[str] | None = None) -> int:
    with command_scope():
        try:
            args = build_parser().parse_args(argv)
            return run_batch(args, processing_settings(args))
        except UserError as error:
            log.error("%s", error)
            return 2
        except KeyboardInterrupt as error:   # a stop signal before or after the workers ran
            return exit_code_for(error)


def _count(n: int, noun: str) -> str:
    """"1 video", "2 videos"."""
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _check_counts(args) -> None:
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1.")
    if args.cpus_per_worker is not None and args.cpus_per_worker < 1:
        raise UserError("--cpus-per-worker must be at least 1.")


def _check_out_dir(text: str) -> Path:
    """The --out-dir, checked without making it: a refused batch (or a dry run) leaves no empty
    folder behind. Where it does not exist yet, its nearest existing parent must take files."""
    out_dir = Path(text).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir '{text}' exists and is not a folder.")
    existing = out_dir.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot make --out-dir '{text}': '{existing}' is not a folder.")
    try:
        probe = existing / f".batch-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to --out-dir '{text}': {error.strerror or error}.") from None
    return out_dir.resolve()


def _make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make --out-dir '{out_dir}': {error.strerror or error}.") from None


def run_batch(args, processing: dict) -> int:
    """processing: the parts of Settings the processing options made (cli.processing_settings)."""
    with OutDirLock() as lock:
        return _run_batch(args, processing, lock)


def _run_batch(args, processing: dict, lock: OutDirLock) -> int:
    _check_counts(args)
    max_frames = InputSettings(max_frames=args.max_frames).max_frames   # checked as a single run's
    extensions = READABLE_VIDEO_EXTENSIONS
    if args.ext:
        extensions = frozenset("." + e.strip().lower().lstrip(".") for e in args.ext.split(",") if e.strip())
        if not extensions:
            raise UserError("--ext needs at least one extension, e.g. mp4,mov")
    ray = None
    if args.ray:
        from .batch_ray import import_ray
        import_ray()   # a missing Ray is said before anything else is done
    out_dir = _check_out_dir(args.out_dir)
    existed = out_dir.is_dir()
    if not args.dry_run and existed:
        lock.take(out_dir)   # before its manifest is read
    jobs = plan_jobs(find_videos(args.inputs, extensions, exclude=out_dir), out_dir,
                     args.export_format, args.video)
    model = resolve_model(args.model)
    pose = replace(processing["pose"], model=model)
    template = Settings(input=InputSettings(max_frames=max_frames), view=ViewSettings(window=False, progress=False),
                        **dict(processing, pose=pose))
    settings = made_with(template)
    stamps = {job.input: input_stamp(job.input) for job in jobs}

    # What an earlier run finished with these settings is skipped; rows of videos not in this
    # batch are kept.
    try:
        previous = read_manifest(out_dir)
    except NotAManifest as error:
        if not (args.force and error.replaceable):
            raise UserError(f"{error}" + (": move it away, choose another --out-dir, or pass --force "
                                          "to replace it." if error.replaceable else "")) from None
        previous = {}   # --force: the user's file is replaced by this batch's manifest
    results: dict[str, VideoResult] = dict(previous)
    todo: list[VideoJob] = []
    changed: list[tuple[VideoJob, str]] = []   # finished, but with other settings or from another file
    skipped = 0
    for job in jobs:
        earlier = previous.get(job.input)
        done = not args.force and is_finished(earlier, job.outputs)
        what = changed_since(earlier, settings, stamps[job.input]) if done else None
        if done and what is None:
            results[job.input] = replace(earlier, status="skipped")
            skipped += 1
        else:
            results[job.input] = VideoResult(job.input, "pending")
            todo.append(job)
            if what is not None:
                changed.append((job, what))
    if not args.force:
        _refuse_to_redo(changed, out_dir)
        _refuse_to_overwrite(todo, previous)
    if args.dry_run:
        if todo:
            print_report("\n".join(f"{job.input} -> {', '.join(job.outputs)}" for job in todo), "the list")
        log.info(f"{_count(len(jobs), 'video')}: {len(todo)} to process, {skipped} "
                 "already done (dry run: nothing processed)")
        return 0
    if not existed:   # a new folder: made now, then locked
        _make_out_dir(out_dir)
        lock.take(out_dir)
        if lock.held and (out_dir / MANIFEST_NAME).exists():
            raise UserError(f"another batch started writing to '{out_dir}' meanwhile: run this one "
                            "again when it has ended, or choose another --out-dir.")
    write_manifest(out_dir, list(results.values()))

    cores = usable_cores()
    if args.ray:
        from .batch_ray import RayRunner, check_shared_storage, cluster_resources, connect
        try:   # Ray's start and the storage check can take a minute: a stop meanwhile is said
            ray = connect(args.ray)
            nodes = check_shared_storage(ray, out_dir, None if model == "blazepose" else model)
        except KeyboardInterrupt:
            log.warning("Batch stopped while connecting to Ray: no video was started.")
            raise
        cpus, gpus = cluster_resources(ray)
        use_gpus = gpus > 0 and model != "blazepose" and args.device != "cpu"
        threads = args.cpus_per_worker or CORES_PER_WORKER
        workers = args.workers or (gpus if use_gpus else max(1, cpus // threads))
        where = f"Ray ({_count(nodes, 'node')}, {cpus} CPUs, {gpus} GPUs)"
    else:
        gpus = local_gpus(model, args.device)
        workers = args.workers or (gpus if gpus else max(1, cores // (args.cpus_per_worker or CORES_PER_WORKER)))
        threads = args.cpus_per_worker or max(1, cores // workers)
        running = min(workers, max(1, len(todo)))
        where = _count(running, 'local worker')
    config = WorkerConfig(template=template, threads=threads)
    log.info(f"{_count(len(jobs), 'video')}: {len(todo)} to process, {skipped} "
             f"already done; {where}, {_count(threads, 'thread')} each; "
             f"outputs in {out_dir}")

    runner = None
    manifest_error: str | None = None   # the first failure to write the manifest: said at the end

    def record(job: VideoJob, result: VideoResult) -> None:
        nonlocal manifest_error
        results[job.input] = replace(result, settings=settings, input_stamp=stamps[job.input])
        try:
            write_manifest(out_dir, list(results.values()))
        except UserError as error:   # a full disk: stop giving out videos, end as a fatal error
            manifest_error = manifest_error or str(error)
            if runner is not None and runner.fatal_error is None:
                runner.fatal_error = str(error)

    started = time.monotonic()
    interrupted = False
    fatal = None
    if todo:
        progress = BatchProgress(len(todo), args.progress, record)
        if ray is not None:
            runner = RayRunner(ray, config, workers, gpus_per_worker=1.0 if use_gpus else 0.0)
        else:
            from .batch_local import LocalRunner
            runner = LocalRunner(config, workers, gpus=list(range(gpus)))
        try:
            runner.run(todo, progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
            if ray is not None:
                ray.shutdown()
        interrupted = interrupted or runner.interrupted
        fatal = runner.fatal_error
    try:
        manifest = write_manifest(out_dir, list(results.values()))
    except UserError as error:
        fatal = fatal or str(error)
    if manifest_error is not None:
        fatal = manifest_error
    if fatal is not None:
        log.error("%s", fatal)
        return 2
    return _report(jobs, results, manifest, time.monotonic() - started, interrupted)


def _refuse_to_redo(changed: list[tuple[VideoJob, str]], out_dir: Path) -> None:
    """A video an earlier batch finished is not redone silently when this batch's settings (or
    the video) differ from that run's: its outputs are results the user has."""
    if not changed:
        return
    job, what = changed[0]
    reason = (f"'{job.relative}' was finished in '{out_dir}' with other settings (the processing "
              "options or the model file)" if what == "settings"
              else f"'{job.relative}' has changed since an earlier batch finished it in '{out_dir}'")
    more = len(changed) - 1
    also = f", and {_count(more, 'more video')} likewise" if more else ""
    raise UserError(f"{reason}{also}: pass --force to redo {'them' if more else 'it'}, "
                    "or choose another --out-dir.")


def _refuse_to_overwrite(todo: list[VideoJob], previous: dict[str, VideoResult]) -> None:
    """Nothing the user has is replaced without --force: an output a job would write that
    exists already is refused, unless an earlier batch left this very video unfinished
    (interrupted, failed, or pending when a killed batch's worker closed it: this check found
    its outputs absent when that row was made, so they are the batch's; redoing them is what
    resuming means). A finished video's outputs in another form (the .mp4 beside an old .json,
    then --export-format csv) count as the user's."""
    for job in todo:
        earlier = previous.get(job.input)
        if earlier is not None and earlier.status not in FINISHED:
            continue   # left unfinished by a batch here: its outputs are the batch's to redo
        for path in job.outputs:
            if os.path.lexists(path):
                raise UserError(f"'{path}' exists already (an output of '{job.relative}'): pass --force "
                                "to replace it, or choose another --out-dir.")


def _report(jobs: list[VideoJob], results: dict[str, VideoResult], manifest: Path,
            seconds: float, interrupted: bool) -> int:
    mine = [results[job.input] for job in jobs]
    counts = {status: sum(r.status == status for r in mine)
              for status in ("ok", "skipped", "failed", "interrupted", "pending")}
    frames = sum(r.frames for r in mine if r.status != "skipped")
    parts = [f"{n} {status}" for status, n in counts.items() if n or status in ("ok", "failed")]
    fps = frames / seconds if seconds > 0 else 0.0
    head = "Batch stopped" if interrupted else "Batch done"
    log.info(f"{head}: {', '.join(parts)} of {_count(len(jobs), 'video')}; {frames} frames in {seconds:.1f} s "
             f"({fps:.1f} fps); manifest {manifest}")
    failed = [(job, results[job.input]) for job in jobs if results[job.input].status == "failed"]
    for job, result in failed:
        log.info("failed: %s: %s", job.input, result.error)
    if interrupted:
        return stop_exit_code()   # 128 + the stop signal's number
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
