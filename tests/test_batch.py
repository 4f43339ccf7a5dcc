"""`run_demo.py batch`: a folder of short clips made from real photos plus a truncated one, run
as a user runs it (a subprocess), locally with 2 workers and on a real local Ray instance."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from app import batch_manifest
from app.batch import main
from app.batch_manifest import COLUMNS
from app.batch_plan import find_videos, plan_jobs
from app.errors import UserError

from support import DATA, ROOT, decoded_frames, drifting_clip

FRAMES = 5
CLIPS = {"group.mp4": "group.jpg", "court/basketball.mp4": "basketball1.jpg",
         "court/messi.mp4": "messi5.jpg", "home/sub/mirrored.mp4": "group.jpg"}
BROKEN = "home/broken.mp4"


def make_clip(path: Path, photo: Path, frames: int = FRAMES) -> Path:
    """A short 320 px wide clip from a real photo (a "mirrored" clip shows the photo flipped)."""
    return drifting_clip(path, photo, frames, fps=10.0, width=320, mirrored="mirrored" in path.name,
                         drift=(3, 2, 2, 3))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for name, photo in CLIPS.items():
        make_clip(root / name, DATA / photo)
    # a download cut short: the real header of a clip, the rest missing
    (root / BROKEN).write_bytes((root / "group.mp4").read_bytes()[:3000])
    return root


def run_batch(*args, timeout=240, env=None):
    return subprocess.run([sys.executable, str(ROOT / "run_demo.py"), "batch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, **(env or {})))


def read_manifest(out: Path) -> dict[str, dict]:
    with open(out / "batch.csv", newline="") as f:
        return {Path(row["input"]).name: row for row in csv.DictReader(f)}


def hidden_files(out: Path) -> list[str]:
    return [str(p) for p in out.rglob(".*")]


def assert_complete_batch(videos: Path, out: Path, result) -> None:
    """The four clips' outputs, under their relative paths; the broken one failed alone."""
    assert result.returncode == 1, result.stderr
    rows = read_manifest(out)
    assert set(rows) == {Path(n).name for n in CLIPS} | {"broken.mp4"}
    for name in CLIPS:
        stem = Path(name).with_suffix("")
        export, video = out / f"{stem}_pose.json", out / f"{stem}_pose.mp4"
        frames = json.loads(export.read_text())["frames"]
        assert len(frames) == FRAMES
        assert any(frame["people"] for frame in frames), name   # real photos of people
        assert decoded_frames(video) == FRAMES
        row = rows[Path(name).name]
        assert (row["status"], int(row["frames"])) == ("ok", FRAMES)
        assert sorted(row["outputs"].split(";")) == sorted([f"{stem}_pose.json", f"{stem}_pose.mp4"])
        assert float(row["fps"]) > 0
    broken = rows["broken.mp4"]
    assert broken["status"] == "failed" and broken["outputs"] == ""
    assert "cut off before its index" in broken["error"]   # a download cut short
    assert not list(out.rglob("broken_pose*"))
    assert hidden_files(out) == []
    summary = [line for line in result.stderr.splitlines() if line.startswith("Batch done")]
    assert summary and "4 ok, 1 failed of 5 videos" in summary[0]
    assert f"failed: {videos / BROKEN}" in result.stderr


@pytest.fixture(scope="module")
def local_run(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    result = run_batch(videos, "--out-dir", out, "--workers", "2", "--cpus-per-worker", "1",
                       "--model", "blazepose")
    return out, result


@pytest.mark.slow
def test_local_batch_with_two_workers(videos, local_run):
    out, result = local_run
    assert_complete_batch(videos, out, result)
    assert "2 local workers" in result.stderr


@pytest.mark.slow
def test_resume_skips_finished_videos_and_retries_the_failed_one(videos, local_run):
    out, _ = local_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*_pose.*")}
    result = run_batch(videos, "--out-dir", out, "--workers", "2", "--model", "blazepose")
    assert result.returncode == 1, result.stderr
    assert "1 to process, 4 already done" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*_pose.*")} == before   # untouched
    rows = read_manifest(out)
    assert [rows[Path(n).name]["status"] for n in CLIPS] == ["skipped"] * 4
    assert rows["broken.mp4"]["status"] == "failed"
    assert "0 ok, 4 skipped, 1 failed of 5 videos" in result.stderr


# ---- Ray ----

@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray instance on this machine (2 CPUs), which the batch joins by its address."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra: pip install -r requirements-cluster.txt")
    # the smallest object store Ray takes: the batch passes only small records through it
    ray.init(num_cpus=2, object_store_memory=80 * 1024 ** 2, include_dashboard=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc (Linux)")
def test_ray_batch_gives_the_same_outputs_as_local_even_when_a_worker_dies(ray_cluster, videos, local_run, tmp_path):
    """The real Ray path on a real local instance; one actor's process is killed mid-video:
    Ray restarts it and retries that video, and every output is still the local run's."""
    local_out, _ = local_run
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(ROOT / "run_demo.py"), "batch", str(videos), "--out-dir",
                                str(out), "--ray", ray_cluster, "--cpus-per-worker", "1", "--model", "blazepose"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    killed = kill_when_writing(out, lambda: processes_whose_command_has("ray::RayVideoWorker.process")[:1])
    stdout, stderr = process.communicate(timeout=240)
    assert killed
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_complete_batch(videos, out, result)
    assert "Ray (1 node, 2 CPUs" in result.stderr
    for name in CLIPS:   # the same joints, to the byte, from the same code on other processes
        export = Path(name).with_suffix("").as_posix() + "_pose.json"
        assert (out / export).read_bytes() == (local_out / export).read_bytes()


# ---- Ctrl-C ----

@pytest.mark.slow
def test_ctrl_c_mid_batch_closes_running_videos_complete_and_says_so(tmp_path):
    """SIGINT to the batch's process group, as a terminal sends it, once videos are being
    written: they stop after the current frame, their files are complete with the frames done,
    the manifest says interrupted / pending, and a second run finishes the job."""
    videos, out = tmp_path / "videos", tmp_path / "out"
    for i, photo in enumerate(["group.jpg", "basketball1.jpg", "messi5.jpg"]):
        make_clip(videos / f"clip{i}.mp4", DATA / photo, frames=120)
    process = start_batch(videos, "--out-dir", out, "--workers", "2", "--model", "blazepose")
    wait_for_writing(out, process)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    rows = read_manifest(out)
    statuses = sorted(row["status"] for row in rows.values())
    assert "interrupted" in statuses, statuses
    for row in rows.values():
        assert row["status"] in ("interrupted", "pending"), row
        if row["status"] == "interrupted":
            frames = int(row["frames"])
            assert 0 < frames < 120
            stem = Path(row["input"]).stem
            assert len(json.loads((out / f"{stem}_pose.json").read_text())["frames"]) == frames
            assert decoded_frames(out / f"{stem}_pose.mp4") == frames
        else:
            assert row["status"] == "pending" and row["outputs"] == ""
    assert hidden_files(out) == []
    assert "Batch stopped" in stderr

    again = run_batch(videos, "--out-dir", out, "--model", "blazepose", "--dry-run")
    assert again.returncode == 0, again.stderr
    assert "3 to process, 0 already done" in again.stderr   # interrupted ones are redone


# ---- a worker that dies ----

def processes_whose_command_has(text: str, parent: int | None = None) -> list[int]:
    """Linux: the processes (children of `parent`, when given) whose command line holds text."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if text in command and (parent is None or ppid == parent):
            found.append(int(proc.name))
    return found


def video_being_written(out: Path) -> bool:
    """A video's outputs have temporary files in `out` (the manifest's own do not count: it is
    rewritten before any worker starts)."""
    return bool(list(out.rglob(".*_pose.part-*")))


def kill_when_writing(out: Path, find_worker, deadline_s: float = 120) -> bool:
    """SIGKILL a worker once a video's output is being written; whether one was killed."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if video_being_written(out):
            for pid in find_worker():
                os.kill(pid, signal.SIGKILL)
                return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc (Linux)")
def test_a_worker_killed_mid_video_costs_a_retry_not_the_video(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    for i, photo in enumerate(["basketball1.jpg", "messi5.jpg"]):
        make_clip(videos / f"clip{i}.mp4", DATA / photo, frames=20)
    process = subprocess.Popen([sys.executable, str(ROOT / "run_demo.py"), "batch", str(videos),
                                "--out-dir", str(out), "--workers", "1", "--model", "blazepose"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    killed = kill_when_writing(out, lambda: processes_whose_command_has("spawn_main", parent=process.pid))
    _, stderr = process.communicate(timeout=240)
    assert killed
    assert process.returncode == 0, stderr
    assert "a worker died (exit code -9)" in stderr and "trying again" in stderr
    rows = read_manifest(out)
    assert [(r["status"], r["frames"]) for r in rows.values()] == [("ok", "20")] * 2
    for i in range(2):
        assert len(json.loads((out / f"clip{i}_pose.json").read_text())["frames"]) == 20
        assert decoded_frames(out / f"clip{i}_pose.mp4") == 20
    assert hidden_files(out) == []   # the killed attempt's temporary files are cleared too


# ---- arguments and planning (no worker started) ----

def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    make_clip(tmp_path / "v" / "a.mp4", DATA / "group.jpg", frames=1)
    (tmp_path / "cut.tar").write_bytes((DATA / "ConvNeXtPose_TINY.tar").read_bytes()[:100_000])
    cases = [([str(tmp_path / "nothing")], "does not exist"),
             # said before the plan, as a single run says it, not by the first worker
             ([str(tmp_path / "v"), "--model", str(tmp_path / "cut.tar")], "'cut.tar' is a truncated or corrupt archive"),
             ([str(tmp_path / "v" / "*.avi")], "matches no videos"),
             ([str(tmp_path / "v"), "--workers", "0"], "--workers must be at least 1"),
             ([str(tmp_path / "v"), "--model", str(tmp_path / "missing.tar")], "does not exist"),
             ([str(tmp_path / "v"), "--fov", "500"], "--fov"),
             ([str(tmp_path / "v"), "--out-dir", str(tmp_path / "v" / "a.mp4")], "not a folder")]
    for argv, message in cases:
        if "--out-dir" not in argv:
            argv = argv + ["--out-dir", str(tmp_path / "out")]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    monkeypatch.setitem(sys.modules, "ray", None)   # as if the extra were not installed
    assert main([str(tmp_path / "v"), "--out-dir", str(tmp_path / "out"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --ray needs Ray, which is not installed: pip install -r requirements-cluster.txt"]
    assert not (tmp_path / "out").exists(), "a refused batch leaves no empty --out-dir behind"
    assert main([str(tmp_path / "v"), "--out-dir", str(tmp_path / "out"), "--dry-run"]) == 0
    assert not (tmp_path / "out").exists(), "nor does a dry run"


def test_a_list_saved_with_a_bom_and_videos_inside_out_dir(tmp_path, capsys):
    """A list file Notepad saved (UTF-8 with a BOM) names its first video as written; videos of
    an input folder that lie inside --out-dir are left out, and the run says so."""
    make_clip(tmp_path / "v" / "a.mp4", DATA / "group.jpg", frames=1)
    make_clip(tmp_path / "v" / "out" / "b.mp4", DATA / "group.jpg", frames=1)
    (tmp_path / "list.txt").write_text("v/a.mp4\n", encoding="utf-8-sig")
    assert main([str(tmp_path / "list.txt"), "--out-dir", str(tmp_path / "o"), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(str(tmp_path / "v" / "a.mp4") + " -> ")
    assert main([str(tmp_path / "v"), "--out-dir", str(tmp_path / "v" / "out"), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count(" -> ") == 1
    assert "1 video(s) in '" + str(tmp_path / "v") + "' lie inside --out-dir and are left out" in captured.err


def test_inputs_by_folder_glob_and_list_keep_relative_paths(tmp_path):
    root = tmp_path / "data"
    for name in ("a/x.mp4", "a/b/y.mov", "a/b/y.mp4", "c/z.avi", "a/notes.txt", "a/.hidden.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    out = root / "a" / "out"   # inside the input folder: its own files are never inputs
    (out / "old_pose.mp4").parent.mkdir(parents=True)
    (out / "old_pose.mp4").write_bytes(b"")

    folder = find_videos([str(root / "a")], exclude=out)
    assert [str(v.relative_to(r)) for v, r in folder] == ["b/y.mov", "b/y.mp4", "x.mp4"]
    jobs = plan_jobs(folder, out, "csv", write_video=True)
    names = [str(Path(j.export_output).relative_to(out)) for j in jobs]
    assert names == ["b/y_mov_pose.csv", "b/y_mp4_pose.csv", "x_pose.csv"]   # same stem told apart
    assert jobs[2].video_output == str(out / "x_pose.mp4")

    globbed = find_videos([str(root / "**" / "*.mp4")], exclude=out)
    assert sorted(str(v.relative_to(r)) for v, r in globbed) == ["a/b/y.mp4", "a/x.mp4"]
    # the output folder itself given as the input: its videos are outputs, and the sentence says so
    with pytest.raises(UserError, match="^the videos in folder '.*out' lie inside --out-dir"):
        find_videos([str(out)], exclude=out)

    listing = tmp_path / "list.txt"
    listing.write_text(f"# my videos\ndata/a/x.mp4\n\n{root / 'c' / 'z.avi'}\ndata/missing.mp4\n")
    listed = find_videos([str(listing)])
    assert [str(v.relative_to(r)) for v, r in listed] == ["a/x.mp4", "c/z.avi", "missing.mp4"]
    assert [j.video_output for j in plan_jobs(listed, tmp_path / "o", "json", write_video=False)] == [None] * 3


# ---- SIGTERM / SIGHUP, and a driver killed with -9 ----

def start_batch(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run_demo.py"), "batch", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=ROOT)


def wait_for_writing(out: Path, process: subprocess.Popen, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not video_being_written(out) and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("signum, to_group", [(signal.SIGTERM, True), (signal.SIGHUP, True),
                                               (signal.SIGTERM, False)],
                         ids=["SIGTERM-group", "SIGHUP-group", "SIGTERM-parent"])
def test_sigterm_and_sighup_stop_the_batch_like_ctrl_c_with_their_own_exit_code(tmp_path, signum, to_group):
    """`timeout`, systemd and `kill -- -PGID` signal the whole group: the worker must not be
    killed by it but close its video complete with the frames done; the exit code is 128 + N."""
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "clip.mp4", DATA / "group.jpg", frames=150)
    process = start_batch(videos, "--out-dir", out, "--workers", "1", "--model", "blazepose")
    wait_for_writing(out, process)
    if to_group:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert_stopped_complete(out, of_frames=150)
    assert "Batch stopped" in stderr


def assert_stopped_complete(out: Path, of_frames: int) -> None:
    """clip.mp4 was stopped part-way, and both its outputs hold exactly the frames done."""
    row = read_manifest(out)["clip.mp4"]
    assert row["status"] == "interrupted", row
    frames = int(row["frames"])
    assert 0 < frames < of_frames
    assert len(json.loads((out / "clip_pose.json").read_text())["frames"]) == frames
    assert decoded_frames(out / "clip_pose.mp4") == frames
    assert hidden_files(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [True, False], ids=["group", "parent"])
def test_sigterm_stops_a_batch_on_a_ray_instance_it_started_like_ctrl_c(tmp_path, to_group):
    """--ray auto with no cluster running starts Ray here, in the batch's process group. Before,
    a SIGTERM to the group killed Ray's processes under the running video (its outputs lost,
    the driver aborted with 134), and one to the driver alone made Ray's own handler exit 1."""
    pytest.importorskip("ray", reason="Ray is the optional extra: pip install -r requirements-cluster.txt")
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "clip.mp4", DATA / "group.jpg", frames=150)
    # a Ray temp folder of its own, so that 'auto' finds no cluster (the module's ray_cluster)
    # and starts one; short, as Ray's socket paths must fit 107 characters
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run_demo.py"), "batch", str(videos), "--out-dir", str(out),
             "--model", "blazepose", "--ray", "auto", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT,
            env=dict(os.environ, RAY_TMPDIR=ray_tmp))
        wait_for_writing(out, process, deadline_s=180)
        if to_group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert process.returncode == 143, stderr
    assert_stopped_complete(out, of_frames=150)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc (Linux)")
def test_a_worker_does_not_outlive_a_driver_killed_with_minus_9(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "clip.mp4", DATA / "group.jpg", frames=150)
    process = start_batch(videos, "--out-dir", out, "--workers", "1", "--model", "blazepose")
    wait_for_writing(out, process)
    workers = processes_whose_command_has("spawn_main", parent=process.pid)
    assert len(workers) == 1
    os.kill(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=30)   # not communicate(): a worker left running holds its pipes
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{workers[0]}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{workers[0]}").exists(), "the worker outlived its driver"
    finally:
        if Path(f"/proc/{workers[0]}").exists():
            os.kill(workers[0], signal.SIGKILL)
        process.stdout.close()
        process.stderr.close()
    # it stopped its video as a stop request would: the outputs hold the frames done
    frames = len(json.loads((out / "clip_pose.json").read_text())["frames"])
    assert 0 < frames <= 150 and decoded_frames(out / "clip_pose.mp4") == frames


# ---- nothing the user has is replaced without --force ----

def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_existing_outputs_and_a_foreign_batch_csv_are_refused_without_force(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "a.mp4", DATA / "group.jpg", frames=1)
    out.mkdir()
    base = [str(videos), "--out-dir", str(out), "--model", "blazepose", "--dry-run"]

    # no manifest, but a file named like an output (the user's, or an earlier run's)
    (out / "a_pose.json").write_text("mine")
    assert main(base) == 2
    line = one_line_error(capsys)
    assert f"'{out / 'a_pose.json'}' exists already" in line and "--force" in line
    assert main(base + ["--force"]) == 0
    capsys.readouterr()

    # a finished video's .mp4 beside its .json; another export format would redo it and replace the .mp4
    (out / "a_pose.mp4").write_text("mine")
    rows = "input,status,frames,seconds,fps,outputs,error\n" \
           f"{videos / 'a.mp4'},ok,1,0.10,10.00,a_pose.mp4;a_pose.json,\n"
    (out / "batch.csv").write_text(rows)
    assert main(base) == 0 and "0 to process, 1 already done" in capsys.readouterr().err
    assert main(base + ["--export-format", "csv"]) == 2
    assert f"'{out / 'a_pose.mp4'}' exists already" in one_line_error(capsys)

    # an interrupted video's own outputs are redone on resume: no --force needed
    (out / "batch.csv").write_text(rows.replace(",ok,", ",interrupted,"))
    assert main(base) == 0 and "1 to process" in capsys.readouterr().err
    # pending, yet its outputs there: a batch killed with -9 whose worker closed them
    (out / "batch.csv").write_text(rows.replace(",ok,1,0.10,10.00,a_pose.mp4;a_pose.json,", ",pending,0,0,0,,"))
    assert main(base) == 0 and "1 to process" in capsys.readouterr().err

    # OUT/batch.csv that is not a manifest: another CSV, not UTF-8, a folder
    for content in (b"name,age\nann,3\n", b"\xff\xfe\x00junk", b""):
        (out / "batch.csv").write_bytes(content)
        assert main(base) == 2
        line = one_line_error(capsys)
        assert "batch.csv' is not a batch manifest" in line and "--force" in line, line
    assert main(base + ["--force"]) == 0
    capsys.readouterr()
    (out / "batch.csv").unlink()
    (out / "batch.csv").mkdir()
    for extra in ([], ["--force"]):
        assert main(base + extra) == 2
        assert "batch.csv' is not a file" in one_line_error(capsys)


@pytest.mark.slow
def test_a_finished_video_is_redone_only_with_force_when_settings_or_the_video_changed(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "a.mp4", DATA / "group.jpg", frames=3)
    args = [str(videos), "--out-dir", str(out), "--model", "blazepose", "--no-progress", "--no-video"]
    assert main(args) == 0
    made = (out / "a_pose.json").read_bytes()
    assert len(json.loads(made)["frames"]) == 3
    capsys.readouterr()
    assert main(args) == 0 and "0 to process, 1 already done" in capsys.readouterr().err

    # other settings: the finished video is not passed off as done, nor redone silently
    for extra in (["--max-frames", "2"], ["--detect-every", "3"], ["--no-smooth"]):
        assert main(args + extra) == 2, extra
        line = one_line_error(capsys)
        assert "'a.mp4' was finished in" in line and "with other settings" in line and "--force" in line, line
        assert (out / "a_pose.json").read_bytes() == made
    assert main(args + ["--max-frames", "2", "--force"]) == 0
    assert len(json.loads((out / "a_pose.json").read_text())["frames"]) == 2
    capsys.readouterr()
    assert main(args + ["--max-frames", "2"]) == 0 and "1 already done" in capsys.readouterr().err

    # the video replaced by another one since
    make_clip(videos / "a.mp4", DATA / "basketball1.jpg", frames=2)
    assert main(args + ["--max-frames", "2"]) == 2
    assert "'a.mp4' has changed since an earlier batch finished it" in one_line_error(capsys)
    assert main(args + ["--max-frames", "2", "--force"]) == 0
    assert main(args + ["--max-frames", "2"]) == 0 and "1 already done" in capsys.readouterr().err


def test_a_manifest_of_an_earlier_version_and_semicolons_in_names_are_read(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "a;b%3B.mp4", DATA / "group.jpg", frames=1)
    out.mkdir()
    for name in ("a;b%3B_pose.mp4", "a;b%3B_pose.json"):
        (out / name).write_text("made by an earlier batch")
    base = [str(videos), "--out-dir", str(out), "--model", "blazepose", "--dry-run"]
    # an earlier version's manifest: no settings, no stamp, outputs joined by ';' unescaped
    (out / "batch.csv").write_text("input,status,frames,seconds,fps,outputs,error\n"
                                   f"{videos / 'a;b%3B.mp4'},ok,1,0.10,10.00,a;b%3B_pose.mp4;a;b%3B_pose.json,\n")
    assert main(base) == 2   # ambiguous there: read as four paths, so not finished, and its outputs exist
    capsys.readouterr()
    # its columns are read by its own header: a failed video's error stays its error
    (out / "batch.csv").write_text("input,status,frames,seconds,fps,outputs,error\n"
                                   "/elsewhere/gone.mp4,failed,0,0.02,0.00,,cannot open video\n")
    gone = batch_manifest.read_manifest(out)["/elsewhere/gone.mp4"]
    assert (gone.status, gone.error, gone.settings, gone.input_stamp) == ("failed", "cannot open video", "", "")
    # this version's: the names escaped, so the finished video is recognised
    (out / "batch.csv").write_text(",".join(COLUMNS) + "\n" + f"{videos / 'a;b%3B.mp4'},ok,1,0.10,10.00,"
                                   "a%3Bb%253B_pose.mp4;a%3Bb%253B_pose.json,,,\n")
    assert main(base) == 0 and "0 to process, 1 already done" in capsys.readouterr().err
    rows = batch_manifest.read_manifest(out)
    assert rows[str(videos / "a;b%3B.mp4")].outputs == [str(out / "a;b%3B_pose.mp4"), str(out / "a;b%3B_pose.json")]


def test_a_changed_video_is_refused_and_a_vanished_one_keeps_its_results(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "a.mp4", DATA / "group.jpg", frames=1)
    (videos / "list.txt").write_text("a.mp4\n")
    out.mkdir()
    for name in ("a_pose.mp4", "a_pose.json"):
        (out / name).write_text("made by an earlier batch")
    # finished from a video of another size and time (the settings not recorded)
    (out / "batch.csv").write_text(",".join(COLUMNS) + "\n" + f"{(videos / 'a.mp4').resolve()},ok,1,0.10,"
                                   "10.00,a_pose.mp4;a_pose.json,,1:1,\n")
    base = [str(videos / "list.txt"), "--out-dir", str(out), "--model", "blazepose", "--dry-run"]
    assert main(base) == 2
    assert "'a.mp4' has changed since an earlier batch finished it" in one_line_error(capsys)
    # the video gone since (a list names it): nothing to compare, its results stay
    (videos / "a.mp4").unlink()
    assert main(base) == 0 and "0 to process, 1 already done" in capsys.readouterr().err


def test_two_batches_on_one_out_dir_do_not_run_at_once(tmp_path, capsys):
    pytest.importorskip("fcntl")
    import fcntl
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "a.mp4", DATA / "group.jpg", frames=1)
    out.mkdir()
    held = os.open(out, os.O_RDONLY)   # as a running batch holds it
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main([str(videos), "--out-dir", str(out), "--model", "blazepose", "--no-progress"]) == 2
        assert one_line_error(capsys) == f"error: another batch is writing to '{out.resolve()}': wait for it " \
                                         "to end, or choose another --out-dir."
        assert list(out.iterdir()) == []
        # a dry run changes nothing, so it is not held up
        assert main([str(videos), "--out-dir", str(out), "--model", "blazepose", "--dry-run"]) == 0
    finally:
        os.close(held)


@pytest.mark.slow
def test_a_rerun_without_manifest_does_not_replace_outputs_then_force_does(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    make_clip(videos / "a.mp4", DATA / "group.jpg", frames=3)
    args = [videos, "--out-dir", out, "--model", "blazepose", "--no-progress"]
    assert run_batch(*args).returncode == 0
    (out / "batch.csv").unlink()
    (out / "a_pose.mp4").write_bytes(b"the user's own")
    result = run_batch(*args)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert (out / "a_pose.mp4").read_bytes() == b"the user's own"
    assert run_batch(*args, "--force").returncode == 0
    assert decoded_frames(out / "a_pose.mp4") == 3


# ---- no tracebacks ----

def test_a_symlink_in_a_folder_is_its_video_named_by_the_link(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "clip.mp4"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"")
    folder = tmp_path / "sl"
    folder.mkdir()
    (folder / "x.mp4").symlink_to(elsewhere)
    for inputs in ([str(folder)], [str(folder / "*.mp4")]):
        found = find_videos(inputs)
        jobs = plan_jobs(found, tmp_path / "out", "json", write_video=True)
        assert [j.relative for j in jobs] == ["x.mp4"], inputs
        assert jobs[0].input == str(folder.resolve() / "x.mp4")
        assert jobs[0].export_output == str((tmp_path / "out").resolve() / "x_pose.json")
    # the video and a link to it, both in the folder: processed once
    (folder / "y.mp4").symlink_to(folder / "x.mp4")
    assert len(find_videos([str(folder)])) == 1


def test_a_full_disk_or_stdout_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    make_clip(tmp_path / "v" / "a.mp4", DATA / "group.jpg", frames=1)
    argv = [str(tmp_path / "v"), "--out-dir", str(tmp_path / "out"), "--model", "blazepose"]

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch_manifest.os, "fsync", full)
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert "cannot write the manifest" in line and "No space left on device" in line
    assert [p.name for p in (tmp_path / "out").iterdir()] == []   # no temporary left behind
    monkeypatch.undo()

    if Path("/dev/full").exists():   # --dry-run's list to a full stdout: a real process, /dev/full
        with open("/dev/full", "w") as full_stdout:
            result = subprocess.run([sys.executable, str(ROOT / "run_demo.py"), "batch", *argv, "--dry-run"],
                                    stdout=full_stdout, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == ["error: cannot write the list to standard output: no space left on device."]


@pytest.mark.slow
def test_a_manifest_that_cannot_be_written_mid_batch_stops_it_cleanly(tmp_path, capsys, monkeypatch):
    videos, out = tmp_path / "videos", tmp_path / "out"
    for i in range(3):
        make_clip(videos / f"clip{i}.mp4", DATA / "group.jpg", frames=3)
    real_fsync = os.fsync
    calls = []

    def fsync_until_full(fd):   # this process writes only the manifest (the workers the outputs)
        calls.append(1)
        if len(calls) > 1:   # the first write (before any video) succeeds
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(batch_manifest.os, "fsync", fsync_until_full)
    code = main([str(videos), "--out-dir", str(out), "--model", "blazepose", "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: cannot write the manifest '{out.resolve() / 'batch.csv'}': " \
                                           "No space left on device."
    assert not (out / "clip2_pose.json").exists()   # no video given out after the failure
    assert hidden_files(out) == []


def test_ray_address_where_nothing_answers_is_a_quick_one_line_error(tmp_path, capsys):
    pytest.importorskip("ray")
    import socket
    with socket.socket() as s:   # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_clip(tmp_path / "v" / "a.mp4", DATA / "group.jpg", frames=1)
    started = time.monotonic()
    assert main([str(tmp_path / "v"), "--out-dir", str(tmp_path / "out"), "--model", "blazepose",
                 "--ray", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - started < 15
    line = one_line_error(capsys)
    assert line.startswith(f"error: cannot connect to the Ray cluster at '127.0.0.1:{port}'"), line


def test_a_stop_while_ray_starts_is_said_and_leaves_the_videos_pending(tmp_path, capsys, monkeypatch):
    """Ray's start can take a minute: a SIGTERM meanwhile ends the batch with 143 and a sentence,
    and the manifest lists the video as still to do."""
    pytest.importorskip("ray")
    from app import batch_ray
    from app.signals import Interrupted

    def stopped_while_starting(address):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(batch_ray, "connect", stopped_while_starting)
    make_clip(tmp_path / "v" / "a.mp4", DATA / "group.jpg", frames=1)
    assert main([str(tmp_path / "v"), "--out-dir", str(tmp_path / "out"), "--model", "blazepose",
                 "--ray", "auto"]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "warning: Batch stopped while connecting to Ray: no video was started."
    assert [(row["status"], row["frames"]) for row in read_manifest(tmp_path / "out").values()] == [("pending", "0")]
