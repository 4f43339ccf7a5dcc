"""Start-up: the BlazePose fallback runs without loading torch, and --benchmark says how long
the launch took to the first frame."""
import json
import subprocess
import sys

from support import DATA, ROOT

# Runs the real command line in a fresh interpreter (this one has torch loaded by other tests),
# then reports which heavy modules the run imported.
_PROBE = """
import json, sys
from app.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def _run(args, tmp_path):
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_fallback_never_imports_torch(tmp_path):
    out = tmp_path / "group.jpg"
    done, lines = _run(["--input", str(DATA / "group.jpg"), "--model", "blazepose", "--no-display",
                        "--output", str(out), "--benchmark"], tmp_path)
    assert done.returncode == 0, done.stderr
    report, probe = lines[-2], lines[-1]
    assert probe == {"code": 0, "torch": False}
    assert out.stat().st_size > 0
    # one still image: launch to its first (only) frame processed, imports and model load
    # included: the launch, then the warm-up, then the frame (rounded to the millisecond each)
    startup = report["startup_s"]
    assert 0 < startup["to_warm_up"] and 0 < startup["warm_up"]
    assert startup["to_warm_up"] + startup["warm_up"] <= startup["to_first_frame"] + 0.002
    assert report["model"].startswith("BlazePose")


def test_a_bad_checkpoint_is_reported_without_torch_for_the_fallback_path(tmp_path):
    # the command line catches checkpoint errors; catching them must not be what loads torch
    done, lines = _run(["--input", str(DATA / "group.jpg"), "--model", str(tmp_path / "none.tar"),
                        "--no-display", "--output", str(tmp_path / "o.jpg")], tmp_path)
    assert lines[-1]["code"] == 2 and "error:" in done.stderr and "Traceback" not in done.stderr
