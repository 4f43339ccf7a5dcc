"""benchmarks/bench_ceiling.py: the replay runs what the real run ran, with the network's time
replaced by the wait asked for (here detecting ahead as on a GPU, which must change no choice)."""
import json
import subprocess
import sys

from support import DATA, ROOT, drifting_clip


def test_the_replay_makes_the_real_runs_choices_and_waits_the_network_time(tmp_path):
    clip = drifting_clip(tmp_path / "skiers.mp4")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ceiling.py"), "--input", str(clip),
                           "--model", str(DATA / "ConvNeXtPose_TINY.tar"), "--max-frames", "12",
                           "--network-ms", "20", "1", "--overlap"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    replay = report["replay"]
    assert replay["frames"] == 12 and replay["detection"]["frames"] == 12
    assert replay["detection"] == report["real_run"]["detection"]
    # the network's share of each frame (every frame has people: one call at least) is at least
    # the 20 ms waited; how much more (the copies, a busy machine) is not this test's to say
    assert replay["efficiency"]["model_ms"] >= 20.0
    outside = report["outside_network_ms"]
    assert outside > 0
    assert report["fps_at_network_ms"]["1"] > report["fps_at_network_ms"]["20"]
    assert report["fps_at_network_ms"]["20"] == round(1000.0 / (outside + 20.0), 1)
