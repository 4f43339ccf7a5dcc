"""What a batch will do: the videos its inputs name, and the outputs each one writes.

Inputs, each one of:
  a folder          every video below it, recursively, chosen by extension
  a glob            "clips/**/*.mp4" (quoted, so the shell does not expand it; ** recurses)
  a list file       a .txt/.lst/.list file: one path per line, relative ones taken from the
                    list's folder; blank lines and lines starting with # are skipped
  a video file      itself
Outputs keep each video's path relative to its input's root: videos/a/b/clip.mp4, given the
folder videos/, writes OUT/a/b/clip_pose.mp4 and OUT/a/b/clip_pose.json.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .formats import READABLE_VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

LIST_EXTENSIONS = (".txt", ".lst", ".list")
OUTPUT_SUFFIX = "_pose"
VIDEO_OUTPUT_EXTENSION = ".mp4"


@dataclass(frozen=True)
class VideoJob:
    """One video of the batch and where its outputs go (absolute paths)."""
    index: int
    input: str
    relative: str               # the input's path below its root: how it is named in messages
    video_output: str | None    # None with --no-video
    export_output: str

    @property
    def outputs(self) -> list[str]:
        return [p for p in (self.video_output, self.export_output) if p]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_root(pattern: str) -> Path:
    """The folder above a glob's first wildcard: what the matches' relative paths start from."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_video(path: Path, extensions: frozenset[str]) -> bool:
    return path.is_file() and path.suffix.lower() in extensions and not path.name.startswith(".")


def _inside(path: Path, folder: Path | None) -> bool:
    """Whether `path`, or the file it resolves to (a symlink's target), lies in `folder`."""
    if folder is None:
        return False
    return any(p == folder or folder in p.parents for p in (path, path.resolve()))


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()   # -sig: a BOM (Notepad) is no part of a path
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the list of videos '{path}': {error}") from None
    entries = [line.strip() for line in lines]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise UserError(f"the list of videos '{path}' names no files.")
    return [(path.parent / Path(e).expanduser()).resolve() for e in entries]


def find_videos(inputs: list[str], extensions: frozenset[str] = READABLE_VIDEO_EXTENSIONS,
                exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(video, root) for every video the inputs name, in a stable order, each video once.
    Files found by searching (folders, globs) are chosen by extension and skip `exclude` (the
    output folder); files named one by one (arguments, list entries) are taken as they are, so
    a missing or corrupt one fails in the batch rather than vanishing from it."""
    exclude = exclude.resolve() if exclude is not None else None
    found: list[tuple[Path, Path]] = []
    named: list[Path] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            root = path.resolve()
            # a video is named by its path in the folder, not resolved: a symlink in it to a
            # video elsewhere is that video, under the link's name
            videos = sorted(p for p in root.rglob("*") if _is_video(p, extensions))
            videos = [v for v in videos if not any(part.startswith(".") for part in v.relative_to(root).parts)]
            searched = [v for v in videos if not _inside(v, exclude)]
            if videos and not searched:   # every one lies in the output folder, whose files are outputs
                raise UserError(f"the videos in folder '{text}' lie inside --out-dir, which is not searched "
                                "(its files are outputs): give an --out-dir outside the inputs.")
            if len(searched) < len(videos):
                log.info("%d video(s) in '%s' lie inside --out-dir and are left out (its files are outputs).",
                         len(videos) - len(searched), text)
            videos = searched
            if not videos:
                raise UserError(f"folder '{text}' holds no videos ({', '.join(sorted(extensions))}).")
            found += [(v, root) for v in videos]
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            named += _read_list(path)
        elif path.is_file():
            named.append(path.resolve())
        elif _is_glob(text):
            written_root = os.path.abspath(_glob_root(str(path)))
            root = Path(written_root).resolve()
            # each match by its path below the glob's folder, like a folder's videos (symlinks kept)
            videos = sorted(root / os.path.relpath(os.path.abspath(p), written_root)
                            for p in glob.glob(str(path), recursive=True))
            videos = [v for v in videos if _is_video(v, extensions) and not _inside(v, exclude)]
            if not videos:
                raise UserError(f"'{text}' matches no videos.")
            found += [(v, root) for v in videos]
        else:
            raise UserError(f"input '{text}' does not exist (give a folder, a glob, a list "
                            f"file {'/'.join(LIST_EXTENSIONS)} or a video).")
    if named:
        root = Path(os.path.commonpath([str(p.parent) for p in named]))
        found += [(p, root) for p in named]
    seen: set[Path] = set()
    unique = []
    for video, root in found:
        if video.resolve() not in seen:   # a video and a symlink to it: once
            seen.add(video.resolve())
            unique.append((video, root))
    return unique


def plan_jobs(videos: list[tuple[Path, Path]], out_dir: Path, export_format: str,
              write_video: bool) -> list[VideoJob]:
    """Name every video's outputs under out_dir. Two videos that would share outputs (clip.mp4
    and clip.avi side by side) are told apart by their extension: clip_mp4_pose.json."""
    out_dir = out_dir.resolve()

    def base(video: Path, root: Path, full: bool) -> Path:
        relative = video.relative_to(root)
        name = video.name.replace(".", "_") if full else video.stem
        return out_dir / relative.parent / f"{name}{OUTPUT_SUFFIX}"

    bases = [base(v, r, False) for v, r in videos]
    counts: dict[Path, int] = {}
    for b in bases:
        counts[b] = counts.get(b, 0) + 1
    bases = [base(v, r, True) if counts[b] > 1 else b for b, (v, r) in zip(bases, videos)]
    owners: dict[Path, Path] = {}
    for b, (video, _) in zip(bases, videos):
        if b in owners:
            raise UserError(f"'{owners[b]}' and '{video}' would write the same outputs "
                            f"({b}.*): give them separately, to different --out-dir folders.")
        owners[b] = video
    jobs = []
    for index, (b, (video, root)) in enumerate(zip(bases, videos)):
        jobs.append(VideoJob(index=index, input=str(video), relative=str(video.relative_to(root)),
                             video_output=str(b.with_name(b.name + VIDEO_OUTPUT_EXTENSION)) if write_video else None,
                             export_output=str(b.with_name(b.name + "." + export_format))))
    return jobs
