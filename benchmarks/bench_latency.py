"""Camera latency: the real frame loop fed by a simulated camera that delivers a real photo at a
steady frame rate, as a driver does. Prints the benchmark JSON, whose `latency_ms` says how long
a frame takes from its arrival to its result, and how much of that is waiting beyond the work
done on it (the promise: at most one frame interval).

    python benchmarks/bench_latency.py [--model PATH] [--fps 30] [--frames 300]
"""
import argparse
import json
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import run  # noqa: E402
from app.cli import parse_settings  # noqa: E402
from app.sources import LiveSource  # noqa: E402
from benchmarks.make_clip import PHOTO  # noqa: E402
from tests.support import FakeCamera  # noqa: E402  (a camera delivering frames in real time)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: as run_demo.py picks)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    photo = cv2.imread(str(PHOTO))
    frame = cv2.hconcat([photo[:, :400], photo[:, 195:435]])   # one person, as make_clip.py
    argv = ["--input", "0", "--benchmark", "--max-frames", str(args.frames)]
    if args.model:
        argv += ["--model", args.model]
    source = LiveSource(FakeCamera(frame, fps=args.fps), "simulated camera")
    result = run.run(parse_settings(argv), source=source)
    print(json.dumps(result.benchmark))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
