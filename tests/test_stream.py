"""Streaming: Stream over real video encoded in the test with PyAV, sources (files, image
folders, truncated and corrupted data, drop-oldest), resolution changes, the CLI and examples."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R
from arrcoc_rt.channels import channel_index
from arrcoc_rt.samples import sample_frames

from conftest import write_video

av = pytest.importorskip("av")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("size", [(97, 65), (320, 240), (33, 17)], ids=["97x65", "320x240", "33x17"])
def test_stream_over_a_file_counts_every_frame_with_pts(tmp_path, size):
    w, h = size
    frames = sample_frames(w, h, 25)
    path = write_video(tmp_path / "clip.mp4", frames)
    with arrcoc_rt.open(path) as src, arrcoc_rt.Stream(device="cpu") as stream:
        results = [stream.process(f) for f in src]
        assert src.stats.decoded == len(frames) == src.frame_count == len(results)  # flushed: no tail loss
        assert src.stats.corrupt_packets == 0 and src.stats.dropped == 0
    assert [r.frame_index for r in results] == list(range(25))
    np.testing.assert_allclose([r.pts for r in results], np.arange(25) / 10.0)
    assert all(r.glimpses.shape[0] == 529 for r in results)


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12", "rgb24", "bgr24", "yuv444p"])
def test_av_frames_of_every_format_match_numpy(fmt):
    """Decoder planes go to our own conversion kernel zero-copy; the result equals processing the
    same picture converted to RGB (exactly for RGB formats, within YUV rounding for YUV ones)."""
    rgb = sample_frames(64, 48, 1)[0]
    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
    a = arrcoc_rt.Stream(device="cpu").process(vf)
    ref = vf.to_ndarray(format="rgb24") if fmt in ("rgb24", "bgr24", "yuv444p") else None
    if ref is not None:
        b = arrcoc_rt.Stream(device="cpu").process(ref)
        np.testing.assert_array_equal(a.glimpses, b.glimpses)
    else:
        # the decoder's own planes (read here through NumPy) through the float64 reference: every
        # colour channel, so swapped or lost chroma shows (a luminance check alone cannot see it)
        h, w = rgb.shape[:2]
        packed = vf.to_ndarray()  # [h * 3/2, w]: Y, then the chroma rows
        y = packed[:h]
        if fmt == "yuv420p":
            planes = (y, packed[h:h + h // 4].reshape(h // 2, w // 2), packed[h + h // 4:].reshape(h // 2, w // 2))
        else:
            planes = (y, np.ascontiguousarray(packed[h:].reshape(h // 2, w // 2, 2)))
        ref = R.build_texture(planes, fmt)
        for c in ("red", "green", "blue"):
            np.testing.assert_allclose(np.asarray(a.texture.channel(c), np.float64),
                                       ref.channel(channel_index(c)), atol=5e-4, err_msg=c)  # float16 storage: 2.4e-4
        # and the picture is the one encoded: BT.601 limited range, chroma at half resolution
        r = np.asarray(a.texture.channel("red"), np.float32)
        assert np.abs(r - rgb[..., 0] / 255).mean() < 0.05


def test_an_opencv_bgr_array_is_declared_with_pixel_format():
    """Stream.process takes pixel_format= as Pipeline.process does (OpenCV users had no way to
    declare BGR through a Stream); an av.VideoFrame, which says its own format, refuses one."""
    rgb = sample_frames(64, 48, 2)
    want = arrcoc_rt.Stream(device="cpu").process_many(rgb)
    s = arrcoc_rt.Stream(device="cpu")
    got = [s.process(np.ascontiguousarray(f[..., ::-1]), pixel_format="bgr24") for f in rgb]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.glimpses, b.glimpses)
        np.testing.assert_array_equal(a.patches, b.patches)
    with pytest.raises(ValueError, match="pixel_format: 'bgr24' given for an av.VideoFrame"):
        s.process(av.VideoFrame.from_ndarray(rgb[0], format="rgb24"), pixel_format="bgr24")


def test_resolution_and_format_change_mid_stream():
    stream = arrcoc_rt.Stream(device="cpu")
    small = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p") for f in sample_frames(64, 48, 3)]
    big = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in sample_frames(160, 96, 3)]
    results = [stream.process(f) for f in small + big + small]
    assert [r.resized for r in results] == [False, False, False, True, False, False, True, False, False]
    assert [r.motion_valid for r in results] == [False, True, True, False, True, True, False, True, True]
    assert results[4].glimpses.shape == results[0].glimpses.shape
    assert stream.pipeline.width == 160  # grown once, then reused for the smaller frames


def test_truncated_and_corrupted_files_never_crash(tmp_path):
    frames = sample_frames(128, 96, 40)
    path = write_video(tmp_path / "clip.ts", frames, container_format="mpegts")
    data = path.read_bytes()
    (tmp_path / "truncated.ts").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, 3 * len(data) // 4, 40):
        corrupt[pos:pos + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.ts").write_bytes(bytes(corrupt))
    # every 7th byte of 3,000 flipped: PyAV's demux meets packets of a stream it does not know
    # (IndexError inside PyAV; was raised to the caller after the frames before it)
    from arrcoc_rt.samples import demo_clip

    flip_clip = write_video(tmp_path / "flip.ts", demo_clip(160, 120, frames=60, cut_at=30), rate=24,
                            container_format="mpegts").read_bytes()
    flipped = bytearray(flip_clip)
    for i in range(len(flip_clip) // 3, len(flip_clip) // 3 + 3000, 7):
        flipped[i] ^= 0xFF
    (tmp_path / "flipped.ts").write_bytes(bytes(flipped))
    for name in ("truncated.ts", "corrupt.ts", "flipped.ts"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with arrcoc_rt.open(tmp_path / name) as src:
                stream = arrcoc_rt.Stream(device="cpu")
                n = sum(1 for f in src if stream.process(f) is not None)
                assert 0 < n <= (60 if name == "flipped.ts" else 40) and src.stats.decoded == n
    (tmp_path / "noise.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(arrcoc_rt.SourceError, match="cannot open"):
        arrcoc_rt.open(tmp_path / "noise.mp4")
    with pytest.raises(arrcoc_rt.SourceError, match="does not exist"):
        arrcoc_rt.open(tmp_path / "missing.mp4")


def test_consecutive_errors_give_a_clear_error(tmp_path):
    """A file's bad packets are skipped and counted; max_consecutive_errors of them in a row end the
    source with a SourceError that says so (here: a damaged MPEG-TS whose demux meets packets of an
    unknown stream), and the frames before it were delivered."""
    from arrcoc_rt.samples import demo_clip

    data = bytearray(write_video(tmp_path / "clip.ts", demo_clip(160, 120, frames=60, cut_at=30), rate=24,
                                 container_format="mpegts").read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 3000, 7):  # every 7th byte of 3,000 flipped
        data[i] ^= 0xFF
    (tmp_path / "damaged.ts").write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with arrcoc_rt.open(tmp_path / "damaged.ts") as src:  # default: 10 in a row
            n = sum(1 for _ in src)
    bad = src.stats.corrupt_packets
    if bad == 0:
        pytest.skip(f"this PyAV {av.__version__} / FFmpeg reads the damaged file without an error")
    assert src.stats.decoded == n and 0 < n < 60
    src = arrcoc_rt.open(tmp_path / "damaged.ts", max_consecutive_errors=1)
    got = 0
    with pytest.raises(arrcoc_rt.SourceError, match="1 consecutive unreadable"):
        for _ in src:
            got += 1
    src.close()
    assert 0 < got <= n and src.stats.corrupt_packets == 1


def test_consecutive_means_in_a_row(tmp_path):
    """Only errors in a row count (an image folder: broken files are certain errors). Two broken
    images apart pass with max_consecutive_errors=2; three in a row end the source after the
    frames before them."""
    from PIL import Image

    good = sample_frames(40, 30, 6)
    names = ["0.png", "1.bad.png", "2.png", "3.bad.png", "4.png", "5.png"]
    folder = tmp_path / "apart"
    folder.mkdir()
    for name, f in zip(names, good):
        (folder / name).write_bytes(b"broken") if ".bad" in name else Image.fromarray(f).save(folder / name)
    with arrcoc_rt.open(folder, max_consecutive_errors=2) as src:
        assert sum(1 for _ in src) == 4 and src.stats.corrupt_packets == 2
    folder = tmp_path / "in_a_row"
    folder.mkdir()
    for i, f in enumerate(good):
        (folder / f"{i}.png").write_bytes(b"broken") if 2 <= i <= 4 else Image.fromarray(f).save(folder / f"{i}.png")
    src = arrcoc_rt.open(folder, max_consecutive_errors=3)
    got = 0
    with pytest.raises(arrcoc_rt.SourceError, match="3 unreadable images in a row"):
        for _ in src:
            got += 1
    src.close()
    assert got == 2 and src.stats.corrupt_packets == 3


def test_drop_oldest_counts_every_drop(tmp_path):
    import time

    frames = sample_frames(64, 48, 30)
    path = write_video(tmp_path / "clip.mp4", frames)
    src = arrcoc_rt.open(path, live=True, drop_oldest=True, queue_size=2)
    stream = arrcoc_rt.Stream(device="cpu")
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for f in src:
            results.append(stream.process(f))
            time.sleep(0.02)  # a slow consumer
    src.close()
    got = len(results)
    assert got + src.stats.dropped == 30, (got, src.stats)
    assert src.stats.dropped > 0 and any("dropped" in str(w.message) for w in caught)
    # Each result says how many frames were dropped right before it (none dropped silently), and a
    # drop keeps the temporal state (motion is valid after the first frame: no reset).
    assert sum(r.dropped_before for r in results) == src.stats.dropped, [r.dropped_before for r in results]
    assert not any(r.reconnected for r in results) and all(r.motion_valid for r in results[1:])
    with pytest.raises(ValueError, match="only for live sources"):
        arrcoc_rt.open(path, drop_oldest=True)


def test_image_folder_source(tmp_path):
    from PIL import Image

    for i, f in enumerate(sample_frames(50, 40, 4)):
        Image.fromarray(f).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "999.png").write_bytes(b"broken")
    with arrcoc_rt.open(tmp_path) as src:
        stream = arrcoc_rt.Stream(device="cpu")
        rs = [stream.process(f) for f in src]
    assert len(rs) == 4 and src.stats.corrupt_packets == 1 and rs[-1].pts is None


def test_stream_options_and_vlm_hook():
    seen = []
    stream = arrcoc_rt.Stream(device="cpu", total_budget=50000, vlm=lambda r: seen.append(r.num_saccades) or "answer")
    r = stream.process(sample_frames(64, 48, 1)[0])
    assert r.vlm_output == "answer" and seen == [r.num_saccades] and r.budgets.sum() <= 50000
    with pytest.raises(ValueError, match="encoder: 'clip' is not understood"):
        arrcoc_rt.Stream(encoder="clip")
    with pytest.raises(ValueError, match="vlm: 'gpt' is not understood; expected 'llava:PATH'"):
        arrcoc_rt.Stream(vlm="gpt")
    with pytest.raises(TypeError, match="vlm: expected an arrcoc_rt.vlm adapter, 'llava:PATH' or a callable"):
        arrcoc_rt.Stream(vlm=3)
    with pytest.raises(ValueError, match="decay"):
        arrcoc_rt.Stream(decay=3.0)
    with pytest.raises(TypeError, match="expected an av.VideoFrame, an array or a tensor"):
        stream.process("frame.png")


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_demo(tmp_path):
    r = _cli(["demo", "--out", "demo", "--device", "cpu"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "scene cuts at frames: [24]" in r.stdout and "latency (end to end): p50" in r.stdout
    with av.open(str(tmp_path / "demo" / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 48
    import json

    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["scene_cuts"] == [24] and summary["tokens_per_frame"] == 529
    assert len((tmp_path / "demo" / "tokens.jsonl").read_text().splitlines()) == 48


def test_cli_run_and_bench(tmp_path):
    write_video(tmp_path / "in.mp4", sample_frames(96, 64, 12))
    r = _cli(["run", "in.mp4", "--out", "ov.mp4", "--jsonl", "t.jsonl", "--device", "cpu"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "frames: 12" in r.stdout and "12 frames decoded, 0 corrupt packets skipped, 0 frames dropped" in r.stdout
    with av.open(str(tmp_path / "ov.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 12
    # every token field of `run --ray`'s lines (docs/SCALING.md), and the glimpse box and reuse
    assert set(json.loads(lines[0])["tokens"][0]) == {"x", "y", "box", "level", "budget", "kind", "patch", "score",
                                                      "reuse"}
    r = _cli(["run", "in.mp4", "--query", "a red car"], tmp_path)
    assert r.returncode != 0 and "needs a text encoder" in r.stderr and "Traceback" not in r.stderr
    from PIL import Image

    Image.fromarray(sample_frames(96, 64, 1)[0][20:50, 20:60]).save(tmp_path / "crop.png")
    r = _cli(["run", "in.mp4", "--query-image", "crop.png", "--device", "cpu"], tmp_path)
    assert r.returncode == 0 and "frames: 12" in r.stdout, r.stderr
    r = _cli(["run", "missing.mp4"], tmp_path)
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = _cli(["bench", "in.mp4", "--frames", "5"], tmp_path)  # a video: packet to token pack, split
    assert r.returncode == 0, r.stderr
    rows = {line.split()[1]: float(line.split()[2]) for line in r.stdout.splitlines()
            if line.startswith("cpu ") and "fps" not in line}
    assert {"decode", "convert", "texture", "cascade", "allocate_and_gather", "pipeline", "packet_to_pack"} <= set(rows)
    assert rows["packet_to_pack"] >= rows["pipeline"] >= rows["texture"] > 0 and "96x64" in r.stdout
    r = _cli(["bench", "--size", "160x120", "--frames", "5"], tmp_path)
    assert r.returncode == 0 and "fps (p50)" in r.stdout and "allocate_and_gather" in r.stdout, r.stderr


@pytest.mark.parametrize("example", ["stream_video.py", "torch_gpu_frames.py"])
def test_examples_run(tmp_path, example):
    if example == "torch_gpu_frames.py":
        pytest.importorskip("torch")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / example)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "frames" in r.stdout
    if example == "stream_video.py":  # the overlay plays at the source's rate, not a fixed one
        import av

        with av.open(str(tmp_path / "sample_clip.mp4")) as a, av.open(str(tmp_path / "overlay.mp4")) as b:
            assert b.streams.video[0].average_rate == a.streams.video[0].average_rate
            assert b.streams.video[0].frames == a.streams.video[0].frames


def test_cli_ctrl_c_prints_a_summary(tmp_path):
    """SIGINT mid-run: exit code 130 and a summary of what was processed, no traceback; the frame in
    hand is finished first, so the JSONL, the overlay and the summary hold the same frames (they
    differed by one when the signal landed between their writes)."""
    import signal
    import time

    frames = sample_frames(160, 120, 2) * 1500
    write_video(tmp_path / "long.mp4", frames)
    # A shell's background job ignores SIGINT, and Python keeps an ignored SIGINT ignored: the child
    # starts with the default disposition, as a command typed at a terminal does.
    p = subprocess.Popen([sys.executable, "-m", "arrcoc_rt.cli", "run", "long.mp4", "--device", "cpu", "--quiet",
                          "--jsonl", "t.jsonl", "--out", "o.mp4", "--summary", "s.json"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:  # signal once a few frames are done, long before the 3000th
        jsonl = tmp_path / "t.jsonl"
        if jsonl.exists() and jsonl.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out, err)
    assert "interrupted (Ctrl-C)" in out and "frames:" in out and "Traceback" not in err
    assert "frames: 3000" not in out
    summary = json.loads((tmp_path / "s.json").read_text())
    with av.open(str(tmp_path / "o.mp4")) as c:
        overlay = sum(1 for _ in c.decode(video=0))
    lines = (tmp_path / "t.jsonl").read_text().count("\n")
    assert summary["interrupted"] and summary["frames"] == lines == overlay >= 5, (summary["frames"], lines, overlay)


def test_cli_png_dir(tmp_path):
    write_video(tmp_path / "in.mp4", sample_frames(64, 48, 3))
    r = _cli(["run", "in.mp4", "--png-dir", "png", "--device", "cpu"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "png").glob("overlay_*.png"))) == 3


def test_resolution_change_inside_a_file(tmp_path):
    """Two MPEG-TS segments of different sizes in one file: every frame decodes, the stream
    notices the change at the first frame of the second segment, and nothing crashes."""
    write_video(tmp_path / "a.ts", sample_frames(96, 64, 8), container_format="mpegts")
    write_video(tmp_path / "b.ts", sample_frames(160, 112, 8), container_format="mpegts")
    (tmp_path / "ab.ts").write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    stream = arrcoc_rt.Stream(device="cpu")
    with arrcoc_rt.open(tmp_path / "ab.ts") as src:
        results = [(f.width, stream.process(f)) for f in src]
    assert src.stats.decoded == 16 and src.stats.corrupt_packets == 0
    assert [w for w, _ in results] == [96] * 8 + [160] * 8
    assert [r.resized for _, r in results] == [False] * 8 + [True] + [False] * 7
    assert results[8][1].texture.width == 160 and not results[8][1].motion_valid and results[9][1].motion_valid


def test_the_cli_reports_where_the_frame_size_changed(tmp_path):
    """`arrcoc-rt run` over a file whose size changes: the JSONL marks the frame (`resized`), and
    the summary lists it (the state is reset there: a cut in that frame cannot be found, and the
    summary said nothing)."""
    write_video(tmp_path / "a.ts", sample_frames(96, 64, 6), container_format="mpegts")
    write_video(tmp_path / "b.ts", sample_frames(160, 112, 6), container_format="mpegts")
    (tmp_path / "ab.ts").write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    from arrcoc_rt import cli

    assert cli.main(["run", str(tmp_path / "ab.ts"), "--device", "cpu", "--quiet", "--jsonl", str(tmp_path / "t.jsonl"),
                     "--summary", str(tmp_path / "s.json")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [line.get("resized", False) for line in lines] == [False] * 6 + [True] + [False] * 5
    assert json.loads((tmp_path / "s.json").read_text())["resized_at"] == [6]
