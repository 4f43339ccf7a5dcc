"""Batch throughput on this machine: the same clips through `run_demo.py batch` with 1 worker, then
2 (or --workers 1,2,4), each into a fresh folder. Wall time includes starting the workers and
loading the model once per worker, as a user's batch does.

    python benchmarks/bench_batch.py --videos 4 --frames 150 --model blazepose
    python benchmarks/bench_batch.py --videos 4 --frames 150 --model ../shared/convnextpose/ConvNeXtPose_L.tar

Prints one JSON object per run ({"workers", "threads_each", "seconds", "frames", "fps",
"videos_per_min", "load_average"}), then the median frame rate per worker count and its
speed-up over the first count. Repeat counts (--workers 1,2,1,2) when the machine is shared.
"""
import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.make_clip import make_clip  # noqa: E402


def run(videos: Path, out: Path, workers: int, model: str, extra: list[str]) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "run_demo.py"), "batch", str(videos),
                             "--out-dir", str(out), "--workers", str(workers), "--model", model,
                             "--no-progress", *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"batch failed ({result.returncode}): {result.stderr[-2000:]}")
    with open(out / "batch.csv", newline="") as f:
        frames = sum(int(row["frames"]) for row in csv.DictReader(f))
    threads = re.search(r"(\d+) threads? each", result.stderr)
    return {"workers": workers, "threads_each": int(threads.group(1)) if threads else None,
            "seconds": round(seconds, 1), "frames": frames, "fps": round(frames / seconds, 2),
            "videos_per_min": round(60 * len(list(videos.glob("*.mp4"))) / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--model", default="blazepose")
    parser.add_argument("--no-video", action="store_true", help="joints only (no annotated videos)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.videos} clips of {args.frames} frames (640x480, one person); "
          f"model {args.model}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        videos.mkdir()
        for i in range(args.videos):
            make_clip(str(videos / f"clip{i}.mp4"), frames=args.frames)
        results = []
        for round_, workers in enumerate(int(w) for w in args.workers.split(",")):
            results.append(run(videos, Path(tmp) / f"out{round_}", workers, args.model,
                               ["--no-video"] if args.no_video else []))
            results[-1]["load_average"] = round(os.getloadavg()[0], 1)
            print(json.dumps(results[-1]))
        # Settings may repeat (--workers 1,2,1,2: the machine's other load drifts); medians.
        by_workers: dict[int, list[float]] = {}
        for r in results:
            by_workers.setdefault(r["workers"], []).append(r["fps"])
        medians = {w: statistics.median(v) for w, v in by_workers.items()}
        first = next(iter(medians))
        print(json.dumps({"median_fps": medians,
                          "speedup": {f"{w}_vs_{first}": round(m / medians[first], 2) for w, m in medians.items()}}))

if __name__ == "__main__":
    main()
