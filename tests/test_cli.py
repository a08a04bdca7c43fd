"""The command line and the examples, run as a user would (subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arrcoc_rt.samples import sample_frames

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_info(tmp_path):
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "info"], tmp_path)
    assert "arrcoc_rt 0." in out and "CUDA backend compiled:" in out and "devices: cpu" in out


def test_texture_demo_on_the_builtin_sample(tmp_path):
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "texture", "--out", "demo", "--device", "cpu"], tmp_path)
    assert "built-in sample" in out and "motion between the last two frames: yes" in out
    from PIL import Image

    sheet = Image.open(tmp_path / "demo" / "contact_sheet.png")
    assert sheet.width > 1000 and sheet.height > 600
    assert len(list((tmp_path / "demo" / "channels").glob("channel_*.png"))) == 40
    # the motion channel of the sample (a moving disc) is not blank
    motion = np.asarray(Image.open(tmp_path / "demo" / "channels" / "channel_10_motion.png"))
    assert motion.max() > 200


def test_texture_on_an_image_and_a_video(tmp_path):
    from PIL import Image

    from arrcoc_rt.samples import sample_frames

    frames = sample_frames(96, 64, 3)
    Image.fromarray(frames[0]).save(tmp_path / "in.png")
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "texture", "in.png", "--out", "img"], tmp_path)
    assert "96x64, 1 frame" in out and (tmp_path / "img" / "contact_sheet.png").exists()
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "in.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "texture", "in.mp4", "--out", "vid"], tmp_path)
    assert "2 frame(s)" in out and "motion between the last two frames: yes" in out


def test_texture_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for args, msg in ((["missing.png"], "does not exist"), (["broken.png"], "cannot read image"),
                      (["--device", "cuda:7"], "device")):
        r = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "texture", *args, "--out", "o"],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_example_runs(tmp_path):
    out = _run([sys.executable, str(ROOT / "examples" / "texture_channels.py")], tmp_path)
    assert "frame 2:" in out and "moving 16x16 patches" in out  # frames count from 0


# ----------------------------------------------------------------------------- outputs, from a CLI trial

def _main(args, capsys):
    from arrcoc_rt.cli import main

    rc = main(args)
    return rc, capsys.readouterr()


def test_outputs_never_overwrite_the_source_or_each_other(tmp_path, capsys):
    """--jsonl naming the video being read destroyed it mid-run; --out and --jsonl (or --summary)
    naming one file clobbered one of them. All refused before any work, the files untouched."""
    from conftest import write_video

    src = write_video(tmp_path / "v.mp4", sample_frames(64, 48, 4))
    before = src.read_bytes()
    for extra, flags in ((["--jsonl", str(src)], "the source"), (["--out", str(tmp_path / "x.mp4"), "--jsonl",
                          str(tmp_path / "x.mp4")], "--out and --jsonl"),
                         (["--jsonl", str(tmp_path / "t.jsonl"), "--summary", str(tmp_path / "t.jsonl")], "--jsonl and --summary"),
                         (["--out", str(tmp_path / "summary.json")], "the summary")):
        rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", *extra], capsys)
        assert rc == 2 and flags.split()[0] in out.err, (extra, out.err)
    assert src.read_bytes() == before and not (tmp_path / "x.mp4").exists() and not (tmp_path / "t.jsonl").exists()


def test_a_run_that_gives_no_frame_leaves_earlier_outputs(tmp_path, capsys):
    """Start past the end: an error (it exited 0, 'no frames processed'), and the JSONL and summary
    of an earlier run stay as they were (the JSONL was truncated to nothing)."""
    from conftest import write_video

    src = write_video(tmp_path / "v.mp4", sample_frames(64, 48, 4))
    jsonl = tmp_path / "t.jsonl"
    assert _main(["run", str(src), "--device", "cpu", "--quiet", "--jsonl", str(jsonl)], capsys)[0] == 0
    kept, summary = jsonl.read_text(), (tmp_path / "summary.json").read_text()
    assert kept.count("\n") == 4 and '"encoder": "builtin"' in summary
    rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--jsonl", str(jsonl), "--start", "100"], capsys)
    assert rc == 2 and "no frames processed" in out.err and "--start" in out.err
    assert jsonl.read_text() == kept and (tmp_path / "summary.json").read_text() == summary


def test_unwritable_outputs_are_found_before_the_run(tmp_path, capsys):
    """A folder that cannot be written (a read-only place; root ignores permission bits, so /proc)
    is named before any frame: the PNGs' folder failed at the first frame after the JSONL was
    truncated, the summary's after the whole run."""
    from conftest import write_video

    src = write_video(tmp_path / "v.mp4", sample_frames(64, 48, 3))
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("earlier\n")
    for extra, flag in ((["--png-dir", "/proc/arrcoc-pngs"], "--png-dir"), (["--summary", "/proc/s.json"], "--summary"),
                        (["--out", "/proc/o.mp4"], "--out")):
        rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--jsonl", str(jsonl), *extra], capsys)
        assert rc == 2 and flag in out.err and "/proc" in out.err and "Traceback" not in out.err, out.err
    assert jsonl.read_text() == "earlier\n"


def test_tokens_to_stdout_and_options_that_do_not_apply(tmp_path, capsys):
    from conftest import write_video

    src = write_video(tmp_path / "v.mp4", sample_frames(64, 48, 3))
    rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--jsonl", "-"], capsys)
    lines = out.out.splitlines()
    assert rc == 0 and len(lines) == 3 and all(json.loads(line)["tokens"] for line in lines)  # stdout: only the tokens
    assert "frames: 3" in out.err and not (tmp_path / "-").exists()
    for flag in (["--format", "parquet"], ["--actors", "2"], ["--resume", "skip"]):  # Ray's own: were ignored
        rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", *flag], capsys)
        assert rc == 2 and flag[0] in out.err and "--ray" in out.err
    rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--max-frames", str(10**20)], capsys)
    assert rc == 0 and "frames: 3" in out.out  # (islice's own error, before)
    for fps, said in (("-1", "> 0"), ("0", "no frame")):
        rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--fps", fps], capsys)
        assert rc == 2 and said in out.err


def test_bench_and_ask_check_their_arguments_first(tmp_path, capsys):
    """bench --size 100000x100000 made 30 GB of frames before the size was checked (a traceback or
    the OOM killer); a folder was 'Is a directory'. ask's options were checked after the model
    loaded (minutes for a large one): here the model folder does not exist, so any model error
    would mean the option was not checked first."""
    rc, out = _main(["bench", "--size", "100000x100000"], capsys)
    assert rc == 2 and "1..16384" in out.err
    rc, out = _main(["bench", str(tmp_path)], capsys)
    assert rc == 2 and "is a folder" in out.err
    from PIL import Image

    Image.fromarray(sample_frames(32, 32, 1)[0]).save(tmp_path / "a.png")
    for flag, value in (("--tokens", "0"), ("--max-new-tokens", "0"), ("--passes", "0"), ("--budget", "bogus")):
        rc, out = _main(["ask", str(tmp_path / "a.png"), "what?", "--vlm", f"llava:{tmp_path / 'no-model'}",
                         flag, value], capsys)
        assert rc == 2 and flag in out.err, (flag, out.err)


def test_experiment_checks_its_output_folder_before_the_study(tmp_path, capsys):
    rc, out = _main(["experiment", "--vlm", f"llava:{tmp_path / 'no-model'}", "--out", "/proc/arrcoc-x"], capsys)
    assert rc == 2 and "--out" in out.err and "/proc" in out.err


def test_demo_ctrl_c_says_so(tmp_path):
    """Ctrl-C in demo exited 0 and its summary read as finished: now 130, "interrupted": true, and
    the JSONL and the summary hold the same frames."""
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "arrcoc_rt.cli", "demo", "--out", "d", "--device", "cpu"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    jsonl = tmp_path / "d" / "tokens.jsonl"
    while time.time() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n") >= 3):
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    if p.returncode == 0:  # the built-in clip ended before the signal arrived
        pytest.skip("the demo finished before the signal")
    assert p.returncode == 130 and summary["interrupted"] and "Traceback" not in err, err
    assert summary["frames"] == jsonl.read_text().count("\n") < 48


def test_run_png_dir_holds_this_runs_frames_and_serve_refuses_what_it_cannot_play(tmp_path, capsys):
    from conftest import write_video

    src = write_video(tmp_path / "v.mp4", sample_frames(64, 48, 5))
    pngs = tmp_path / "pngs"
    assert _main(["run", str(src), "--device", "cpu", "--quiet", "--png-dir", str(pngs)], capsys)[0] == 0
    (pngs / "mine.png").write_bytes(b"x")  # not an overlay: kept
    assert _main(["run", str(src), "--device", "cpu", "--quiet", "--png-dir", str(pngs), "--max-frames", "2"],
                 capsys)[0] == 0
    assert sorted(p.name for p in pngs.iterdir()) == ["mine.png", "overlay_00000.png", "overlay_00001.png"]
    (tmp_path / "notavideo.mp4").write_bytes(b"not a video at all")
    rc, out = _main(["serve", str(tmp_path / "notavideo.mp4")], capsys)  # it served a page that could not play it
    assert rc == 2 and "cannot open" in out.err and "Errno" not in out.err
    with pytest.raises(SystemExit):
        _main(["serve", "--max-upload", "0mb"], capsys)
    assert "no upload would fit" in capsys.readouterr().err


def test_outputs_into_pipes_and_png_folders_that_are_inputs(tmp_path, capsys):
    """From a review: a FIFO given as --jsonl (a shell's >(jq .)) was probed by opening it, which gave
    its reader an end of file, and the run then hung; a --png-dir that is the image folder being
    read lost its files; a run with no frame emptied an earlier run's PNG folder."""
    import os
    import threading

    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(sample_frames(48, 32, 3)):
        Image.fromarray(f).save(folder / f"overlay_{i:05d}.png")  # named as overlays: the worst case
    fifo = tmp_path / "tokens.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.extend(open(fifo).read().splitlines()), daemon=True)
    reader.start()
    rc, out = _main(["run", str(folder), "--device", "cpu", "--quiet", "--jsonl", str(fifo)], capsys)
    reader.join(60)
    assert rc == 0 and len(got) == 3 and all(json.loads(line)["tokens"] for line in got), out.err
    rc, out = _main(["run", str(folder), "--device", "cpu", "--quiet", "--png-dir", str(folder)], capsys)
    assert rc == 2 and "source" in out.err and len(list(folder.glob("overlay_*.png"))) == 3
    pngs = tmp_path / "pngs"
    assert _main(["run", str(folder), "--device", "cpu", "--quiet", "--png-dir", str(pngs)], capsys)[0] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out = _main(["run", str(empty), "--device", "cpu", "--quiet", "--png-dir", str(pngs)], capsys)
    assert rc == 2 and len(list(pngs.glob("overlay_*.png"))) == 3  # nothing ran: the earlier PNGs stay


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """A run started with SIGINT ignored (a script's `cmd &`) is not stopped by one: the deferred
    Ctrl-C replaces only Python's own handler."""
    import signal
    import time

    from conftest import write_video

    write_video(tmp_path / "v.mp4", sample_frames(64, 48, 2) * 40)
    p = subprocess.Popen([sys.executable, "-m", "arrcoc_rt.cli", "run", "v.mp4", "--device", "cpu", "--quiet",
                          "--jsonl", "t.jsonl"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 120
    jsonl = tmp_path / "t.jsonl"
    while time.time() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n") >= 3):
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "frames: 80" in out and "interrupted" not in out, (out, err)


def test_run_takes_the_allocation_training_used(tmp_path, capsys):
    """`arrcoc-rt train --gestalt K --text-floor N` had no counterpart in `run`: weights trained so
    could not be run as trained from the CLI (docs/TRAINING.md)."""
    from conftest import write_video

    src = write_video(tmp_path / "v.mp4", sample_frames(64, 48, 2))
    rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--jsonl", str(tmp_path / "t.jsonl"),
                     "--gestalt", "8", "--text-floor", "0"], capsys)
    assert rc == 0, out.err
    record = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    settings = json.loads((tmp_path / "summary.json").read_text())["settings"]
    assert record["counts"]["gestalt"] == 64 and (settings["gestalt_x"], settings["text_floor"]) == (8, 0)
    rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--gestalt", "0"], capsys)
    assert rc == 2 and "--gestalt 0 is out of range" in out.err  # the flag, not the keyword (gestalt_x)
    rc, out = _main(["run", str(src), "--device", "cpu", "--quiet", "--saccades", "-1"], capsys)
    assert rc == 2 and "--saccades -1 is out of range" in out.err
