"""Start-up: from launch to the first frame processed, for one image, cold and warm.

    .venv/bin/python benchmarks/bench_startup.py [--model blazepose|PATH] [--runs 3]

Runs `run_demo.py --input samples/group.jpg --no-display --benchmark` in fresh processes and
reads `startup_s.to_first_frame` from each one's JSON (the process's own launch time, from the
kernel, to its first frame processed: interpreter, imports, model load, warm-up, the frame).
"Cold": before each run, the files it reads (the virtual environment's packages, the project,
the checkpoint) are dropped from the page cache with posix_fadvise(DONTNEED), as after a reboot
(pages some other process has mapped stay). "Warm": the same command run again at once.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def drop_from_page_cache(paths: list[Path]) -> int:
    """Ask the kernel to forget the cached pages of every file under `paths`; the files count."""
    count = 0
    for top in paths:
        files = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())
        for path in files:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def run_once(model: str) -> tuple[float, float]:
    """(to_first_frame from the app's JSON, wall seconds of the whole process)."""
    command = [sys.executable, str(ROOT / "run_demo.py"), "--input", str(ROOT / "samples" / "group.jpg"),
               "--no-display", "--benchmark", "--model", model]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["startup_s"]["to_first_frame"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="blazepose")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cached = [Path(sysconfig.get_paths()["purelib"]), ROOT / "app", ROOT / "models"]
    if args.model != "blazepose":
        cached.append(Path(args.model).resolve())
    results = {"cold": [], "warm": []}
    for _ in range(args.runs):
        drop_from_page_cache(cached)
        results["cold"].append(run_once(args.model))
        results["warm"].append(run_once(args.model))
    for kind, runs in results.items():
        first = [r[0] for r in runs]
        wall = [r[1] for r in runs]
        print(f"{args.model} {kind}: to first frame {min(first):.2f}-{max(first):.2f} s "
              f"(median {statistics.median(first):.2f}); whole process {min(wall):.2f}-{max(wall):.2f} s")


if __name__ == "__main__":
    main()
