"""The frame rate the pipeline around ConvNeXtPose allows for a given network time: what a run on
a GPU would reach, measured on any CPU (the people search, the crops, the tracker and the rest run
on the CPU whatever the network runs on).

    python benchmarks/bench_ceiling.py --input CLIP --model CKPT [--network-ms 0.77 1.5]

Two runs of the same input, one after the other in this process:
1. the real run: ConvNeXtPose on this machine; the network's answer to every batch of crops it is
   given is kept, in order;
2. the replay: the same run again, the network's answers given back in that order, each after
   waiting the first `--network-ms` (a sleep: it releases the GIL, as waiting for a CUDA copy
   does). Everything else runs for real: decoding, the people search, the crops and their
   back-projection, tracking, the floor. The answers being the same, so are the crops, the
   tracks and every choice of the detection plan.
Prints one JSON object: the replay's `--benchmark` report, `outside_network_ms` (the time per
frame spent outside the network: 1000 / fps - model_ms, over the frames after the first, whose
whole sweep is a one-off), and `fps_at_network_ms`, the frame rate that leaves for each network
time asked (1000 / (outside + network)): the ceiling of a GPU run whose host CPU is like this one.
The default 0.77 ms is ConvNeXtPose-L at batch 1 replayed from a CUDA graph in TF32 on an H200
(docs/benchmarks.md, GPU). `--overlap` runs the replay as on a GPU, where the frame loop detects
in the next frame on a helper thread while this frame's poses are computed (on the CPU it does
not: the network wants every core).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import frame_loop, run  # noqa: E402
from app.cli import parse_settings  # noqa: E402
from app.estimator import ConvNeXtPoseBackend  # noqa: E402


class ReplayedNetwork:
    """Wraps ConvNeXtPoseBackend.infer: records its answers, then replays them after a wait."""

    def __init__(self, network_ms: float):
        self.network_s = network_ms / 1000.0
        self.answers: list[tuple[int, tuple]] = []   # (batch size, (coords, confidence))
        self.replaying = False
        self._next = 0
        self._infer = ConvNeXtPoseBackend.infer

    def __enter__(self) -> "ReplayedNetwork":
        replay = self

        def infer(backend, crops_bgr):
            return replay(backend, crops_bgr)
        ConvNeXtPoseBackend.infer = infer
        return self

    def __exit__(self, *exc) -> None:
        ConvNeXtPoseBackend.infer = self._infer

    def __call__(self, backend, crops_bgr):
        if not self.replaying:
            answer = self._infer(backend, crops_bgr)
            self.answers.append((len(crops_bgr), tuple(a.copy() for a in answer)))
            return answer
        if self._next >= len(self.answers) or self.answers[self._next][0] != len(crops_bgr):
            raise RuntimeError("the replay asked for other batches than the recorded run: "
                               "the run is not deterministic here")
        answer = self.answers[self._next][1]
        self._next += 1
        time.sleep(self.network_s)
        return tuple(a.copy() for a in answer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a video file (benchmarks/make_clip.py makes one)")
    parser.add_argument("--model", required=True, help="a ConvNeXtPose checkpoint")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--network-ms", type=float, nargs="+", default=[0.77],
                        help="network times to project to; the replay waits the first")
    parser.add_argument("--overlap", action="store_true",
                        help="the replay detects ahead on a helper thread, as on a GPU")
    args = parser.parse_args()
    argv = ["--input", args.input, "--model", args.model, "--benchmark", "--no-progress"]
    if args.max_frames:
        argv += ["--max-frames", str(args.max_frames)]
    with ReplayedNetwork(args.network_ms[0]) as network:
        real = run.run(parse_settings(argv))
        if real.exit_code or not real.benchmark:
            return real.exit_code or 1
        network.replaying = True
        if args.overlap:
            frame_loop.overlaps_detection = lambda backend: True
        replay = run.run(parse_settings(argv))
        if replay.exit_code:
            return replay.exit_code
    report = replay.benchmark
    steady = report["efficiency"].get("after_first_frame") or \
        {"fps": report["fps"], "model_ms": report["efficiency"]["model_ms"]}
    outside = 1000.0 / steady["fps"] - steady["model_ms"]
    print(json.dumps({
        "replay": report,
        "real_run": {"fps": real.benchmark["fps"], "detection": real.benchmark.get("detection")},
        "outside_network_ms": round(outside, 3),
        "fps_at_network_ms": {f"{ms:g}": round(1000.0 / (outside + ms), 1) for ms in args.network_ms},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
