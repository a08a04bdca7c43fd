"""What a user gets wrong, or does in an order nobody planned, answered with a clear error or the
expected result, never a crash or silent garbage: sources closed while read, 16-bit and float
images, queries changed in place, planar frames with a pixel format, output paths that cannot be
written, overlays of the wrong frame, a refused frame in a batch of streams, queries set late."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt.samples import sample_frames

from conftest import write_video

av = pytest.importorskip("av")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", sample_frames(64, 48, 40))


def test_a_source_closed_while_read_ends_the_loop_and_is_read_once(clip):
    src = arrcoc_rt.open(clip)
    it = iter(src)
    for _ in range(3):
        next(it)
    src.close()
    with pytest.raises(StopIteration):  # was a segfault: the demuxer freed under the decoder
        next(it)
    with pytest.raises(ValueError, match="closed"):
        next(iter(src))
    assert src.metadata["width"] == 64

    with arrcoc_rt.open(clip) as src:
        assert len(list(src)) == 40
        with pytest.raises(ValueError, match="read once"):  # was: 0 frames and a corrupt packet counted
            next(iter(src))
        assert src.stats.corrupt_packets == 0


def test_close_from_another_thread_while_a_loop_reads(clip):
    for delay in (0.0, 0.005, 0.02):  # at once, early and late in the loop (a UI's stop button)
        src = arrcoc_rt.open(clip)
        closer = threading.Timer(delay, src.close)
        it = iter(src)
        next(it)
        got = 1
        closer.start()
        for _ in it:
            got += 1
            threading.Event().wait(0.005)  # 40 frames take >= 200 ms; the close comes within 20 ms
        closer.join()
        # the loop ended early (all 40 would be a close that never took effect), and counted right
        assert 1 <= got < 40 and src.stats.delivered == got, got


def test_metadata_outlives_the_container_for_every_container(tmp_path):
    frames = sample_frames(48, 32, 6)
    for name, fmt in (("a.mkv", "matroska"), ("a.webm", None), ("a.mp4", None)):
        codec = "libvpx-vp9" if name.endswith(".webm") else "mpeg4"
        if codec not in av.codecs_available:
            continue
        path = write_video(tmp_path / name, frames, codec=codec, container_format=fmt)
        with arrcoc_rt.open(path) as src:
            n = len(list(src))
        m = src.metadata  # after close: the README prints it there
        assert n == 6 and (m["width"], m["height"]) == (48, 32) and m["duration_s"] and m["duration_s"] > 0, m
        assert "48x32" in repr(src)


def test_sixteen_bit_images_are_scaled_and_float_ones_refused(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(ramp).save(folder / "a16.png")
    assert Image.open(folder / "a16.png").mode in ("I;16", "I")  # "I" before Pillow 10.3
    with arrcoc_rt.open(folder) as src:
        (frame,) = list(src)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[..., 0], np.rint(ramp / 257.0).astype(np.uint8))  # was: 13 levels
    assert len(np.unique(frame)) == 256

    Image.fromarray((ramp / 65535.0).astype(np.float32)).save(folder / "b_float.tif")
    with arrcoc_rt.open(folder) as src, pytest.raises(ValueError, match="32-bit float"):
        list(src)  # was: a black frame
    with pytest.raises(ValueError, match="32-bit float"):
        arrcoc_rt.Stream(device="cpu", query_image=str(folder / "b_float.tif"))
    s = arrcoc_rt.Stream(device="cpu", query_image=str(folder / "a16.png"))  # a 16-bit exemplar works
    assert s.process(sample_frames(64, 48, 1)[0]).num_saccades > 0


def test_a_query_changed_in_place_is_a_new_query():
    frame = sample_frames(128, 96, 1)[0].copy()
    frame[20:60, 30:70] = (250, 20, 20)
    frame[40:90, 80:120] = (20, 20, 250)
    red, blue = np.ascontiguousarray(frame[20:60, 30:70]), np.ascontiguousarray(frame[45:85, 80:120])

    def relevances(first, second, in_place):
        p = arrcoc_rt.Pipeline(128, 96, encoder="builtin", device="cpu", decay=0.0)
        q = first.copy()
        a = p.process(frame, query_image=q).relevance.copy()
        if in_place:
            q[...] = second  # same object, new values
        else:
            q = second.copy()
        return a, p.process(frame, query_image=q).relevance.copy()

    _, changed = relevances(red, blue, in_place=True)
    red_relevance, fresh = relevances(red, blue, in_place=False)
    assert not np.array_equal(red_relevance, fresh)
    np.testing.assert_array_equal(changed, fresh)  # was: the red exemplar's relevance again
    same_a, same_b = relevances(red, red, in_place=True)
    np.testing.assert_array_equal(same_a, same_b)


@pytest.mark.parametrize("pixel_format", ["bgr24", "rgb24", "gray8", "rgba32"])
def test_a_planar_frame_refuses_a_pixel_format_it_cannot_honour(pixel_format):
    chw = np.ascontiguousarray(sample_frames(64, 48, 1)[0].transpose(2, 0, 1))
    b = arrcoc_rt.TextureBuilder(64, 48, device="cpu")
    with pytest.raises(ValueError, match="planar RGB"):  # was: read as RGB whatever it said
        b.build(chw, pixel_format=pixel_format)
    b.build(chw, pixel_format="rgbp")
    b.build(chw)


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_output_paths_that_cannot_be_written_fail_before_any_work(clip, tmp_path):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        (["run", str(clip), "--out", "missing/o.mp4"], "does not exist"),
        (["run", str(clip), "--jsonl", "a_folder"], "is a folder"),
        (["run", str(clip), "--jsonl", "t.jsonl", "--summary", "a_folder"], "is a folder"),
        (["run", str(clip), "--png-dir", "a_file"], "is a file"),
        (["run", str(clip), "--out", "o.webm"], "overlay video"),
        (["run", str(clip), "--max-frames", "-3"], "--max-frames"),
        (["texture", "--out", "a_file"], "is a file"),
        (["demo", "--out", "a_file"], "is a file"),
    ]
    for args, message in cases:
        out = _cli(args, tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)
        assert out.stderr.startswith("arrcoc-rt: error:") and message in out.stderr, (args, out.stderr)
    assert not (tmp_path / "t.jsonl").exists() and not (tmp_path / "o.webm").exists()  # nothing ran, nothing left
    out = _cli(["serve", "--port", "99999"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "65535" in out.stderr, out.stderr


def test_the_overlay_refuses_what_it_would_draw_wrong():
    img = sample_frames(64, 48, 1)[0]
    r = arrcoc_rt.Pipeline(64, 48, device="cpu").process(img)
    plain = dict(heat=False, saccades=False, gestalt=False, cuts=False, legend=False, caption=False)
    np.testing.assert_array_equal(arrcoc_rt.overlay(img, r, **plain), img)
    np.testing.assert_array_equal(arrcoc_rt.overlay(np.ascontiguousarray(img.transpose(2, 0, 1)), r, **plain), img)
    with pytest.raises(TypeError, match="uint8"):  # was: a black picture
        arrcoc_rt.overlay(img.astype(np.float32) / 255, r)
    with pytest.raises(ValueError, match="64x48 frame"):  # was: drawn on a 30x20 crop
        arrcoc_rt.overlay(img[:20, :30], r)


@pytest.mark.parametrize("refused", ["frame", "query map"])
def test_a_refused_frame_in_a_batch_moves_no_stream(refused):
    frames = [sample_frames(64, 48, 3, step=(2 * s + 1, s)) for s in range(3)]
    with arrcoc_rt.StreamGroup(64, 48, 3, device="cpu") as group, \
            arrcoc_rt.StreamGroup(64, 48, 3, device="cpu") as reference:
        group.process_batch([f[0] for f in frames])
        reference.process_batch([f[0] for f in frames])
        if refused == "frame":
            with pytest.raises(TypeError, match="stream 1"):
                group.process_batch([frames[0][1], frames[1][1].astype(np.float32), frames[2][1]])
        else:  # a map of the wrong shape: found only after the texture, before the check came first
            with pytest.raises(ValueError, match="stream 2"):
                group.process_batch([f[1] for f in frames], queries=[None, None, arrcoc_rt.Query.map(np.ones((7, 5)))])
        got = group.process_batch([f[2] for f in frames])
        want = reference.process_batch([f[2] for f in frames])  # never saw the refused batch
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.budgets, w.budgets)
        np.testing.assert_array_equal(g.relevance, w.relevance)


def test_queries_given_to_a_stream_later_or_wrongly(tmp_path):
    frames = sample_frames(64, 48, 3)
    s = arrcoc_rt.Stream(device="cpu")
    first = s.process(frames[0])
    s.set_query(query_image=np.ascontiguousarray(frames[0][8:40, 8:40]))  # was: TypeError at the next frame
    r = s.process(frames[1])
    assert r.num_saccades > 0 and not np.array_equal(r.relevance, first.relevance)
    with pytest.raises(ValueError, match="cannot read"):
        arrcoc_rt.Stream(device="cpu", query_image=str(tmp_path / "missing.png"))
    with pytest.raises(TypeError, match="text encoder"):
        arrcoc_rt.Stream(device="cpu", query_text="a red car")
    with pytest.raises(TypeError, match="text encoder"):
        s.set_query(query_text="a red car")
    if not arrcoc_rt.cuda_available():
        with pytest.raises(ValueError, match="device"):
            arrcoc_rt.Stream(device="cuda")


def test_a_refused_frame_does_not_hide_the_next_resize():
    s = arrcoc_rt.Stream(device="cpu")
    s.process(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(TypeError):
        s.process(np.zeros((20, 30, 3), np.float32))
    assert s.process(np.zeros((20, 30, 3), np.uint8)).resized  # was: False


def test_messages_name_the_real_limits(clip):
    with pytest.raises(ValueError, match="frames per second"):
        arrcoc_rt.open(clip, fps=-1)
    p = arrcoc_rt.Pipeline(64, 48, device="cpu")
    with pytest.raises(ValueError, match="query: the similarity map's value 100000 is out of range"):
        p.process(sample_frames(64, 48, 1)[0], query_map=np.full((48, 64), 1e5, np.float32))


def test_close_does_not_wait_for_a_read_blocked_in_follow_mode(tmp_path):
    """A stop button during a read that waits for a growing file's next bytes (follow): close()
    returns at once; the reading thread closes the container when its read gives up."""
    path = write_video(tmp_path / "grow.ts", sample_frames(64, 48, 10), container_format="mpegts")
    src = arrcoc_rt.open(path, follow=3.0)
    took = []

    def stop():
        t = time.monotonic()
        src.close()
        took.append(time.monotonic() - t)

    closer = threading.Timer(0.5, stop)  # after the 10 frames, while the read waits for more
    closer.start()
    frames = sum(1 for _ in src)
    closer.join()
    assert frames <= 10 and took[0] < 0.5, (frames, took)  # was: close() waited for the read (2.5 s)


def test_an_overlay_writer_removes_only_a_video_it_made(tmp_path):
    from arrcoc_rt.visualize import OverlayWriter

    mine = tmp_path / "mine.webm"
    mine.write_bytes(b"a video of mine")
    with pytest.raises(ValueError, match="overlay video"):
        OverlayWriter(mine)  # no H.264 in WebM
    assert mine.read_bytes() == b"a video of mine"  # was: deleted
    kept = tmp_path / "last_run.mp4"
    kept.write_bytes(b"yesterday's overlay")
    OverlayWriter(kept).close()  # a run that wrote no frame
    assert kept.read_bytes() == b"yesterday's overlay"
    fresh = tmp_path / "fresh.mp4"
    OverlayWriter(fresh).close()
    assert not fresh.exists()  # an empty video it made itself is not left behind


def test_sixteen_bit_grey_in_mode_I_is_scaled_too():
    from arrcoc_rt.images import pil_to_rgb8

    ramp = np.linspace(0, 65535, 64).reshape(4, 16).astype(np.uint16)
    old_pillow = Image.fromarray(ramp.astype(np.int32), mode="I")  # how Pillow < 10.3 and PGM files give it
    np.testing.assert_array_equal(pil_to_rgb8(old_pillow)[..., 0], np.rint(ramp / 257.0).astype(np.uint8))
    with pytest.raises(ValueError, match="beyond 0..65535"):
        pil_to_rgb8(Image.fromarray(np.full((4, 4), 70000, np.int32), mode="I"))


@pytest.mark.parametrize("refused_shape", [(480, 800, 3), (20, 30, 3)], ids=["larger", "smaller"])
def test_a_refused_frame_keeps_the_streams_history(refused_shape):
    frames = sample_frames(160, 120, 3)
    s, reference = arrcoc_rt.Stream(device="cpu"), arrcoc_rt.Stream(device="cpu")
    for f in frames[:2]:
        s.process(f)
        reference.process(f)
    with pytest.raises(TypeError):
        s.process(np.zeros(refused_shape, np.float32))
    got, want = s.process(frames[2]), reference.process(frames[2])
    assert got.motion_valid and not got.resized and s.pipeline.width == 160  # was: rebuilt or reset
    np.testing.assert_array_equal(got.positions, want.positions)


def test_torch_results_of_a_zero_copy_frame_cannot_change_the_next_frame():
    torch = pytest.importorskip("torch")
    frames = sample_frames(96, 64, 3)
    p, reference = arrcoc_rt.Pipeline(96, 64, device="cpu"), arrcoc_rt.Pipeline(96, 64, device="cpu")
    for f in frames[:1]:
        p.process(f)
        reference.process(f)
    r = p.process(frames[1], copy=False, return_tensors="pt")
    reference.process(frames[1])
    assert isinstance(r.relevance, torch.Tensor)
    r.relevance.mul_(0)  # the carried relevance was this very memory
    np.testing.assert_array_equal(p.process(frames[2]).positions, reference.process(frames[2]).positions)


def test_bench_times_the_frames_asked_for(clip, tmp_path):
    out = _cli(["bench", str(clip), "--frames", "2"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "2 frames per device" in out.stdout, out.stdout  # was: 5 (the 3 warm-up frames counted again)


class _Frame:
    """What the sampling reads of a decoded frame: its time and its opaque marker."""

    def __init__(self, time, opaque=None):
        self.time, self.opaque = time, opaque


def _session(n, rate=10.0, gap=False):
    from arrcoc_rt.sources import SourceGap

    frames = [_Frame(i / rate) for i in range(n)]
    if gap:  # the first frame after a reconnection: no time yet, the new session's clock follows
        frames[0] = _Frame(None, SourceGap(1.5, 1))
    return frames


def test_sampling_after_a_reconnection_keeps_its_rate_and_its_marker(clip):
    from arrcoc_rt.sources import SourceGap

    src = arrcoc_rt.open(clip, fps=2)  # the file's 10 fps stand for a camera's
    kept = list(src._sampled(iter(_session(60) + _session(30, gap=True))))
    after = kept[[isinstance(f.opaque, SourceGap) for f in kept].index(True):]
    # the new session is sampled at 2 fps from its start (was: nothing for the 6 s the old one ran)
    assert [f.time for f in after[1:4]] == pytest.approx([0.5, 1.0, 1.5])
    src.close()

    src = arrcoc_rt.open(clip, stride=3)
    frames = _session(10) + _session(10, gap=True)[0:1] + _session(10)[1:]
    kept = list(src._sampled(iter(frames)))
    assert sum(isinstance(f.opaque, SourceGap) for f in kept) == 1  # was: lost with the frame left out
    src.close()


def test_drop_oldest_passes_a_dropped_frames_reconnection_marker_on(clip):
    from arrcoc_rt.sources import SourceGap

    src = arrcoc_rt.open(clip, live=True, drop_oldest=True, queue_size=2)
    src._decode = lambda: iter(_session(5) + _session(5, gap=True))  # a consumer that took nothing yet
    src._reader()
    queued = list(src._queue)
    assert len(queued) == 2 and src.stats.dropped == 8
    assert sum(isinstance(f.opaque, SourceGap) for f in queued) == 1  # was: dropped with its frame
    gap = queued[0].opaque  # the first frame still queued reports all 8 drops and the reconnection
    assert gap.dropped == 8 and gap.reconnected and gap.seconds == 1.5
    src.close()


def test_bench_reads_a_video_by_any_suffix_no_image_reader_claims(clip, tmp_path):
    mpg = tmp_path / "clip.mpg"
    mpg.write_bytes(clip.read_bytes())  # an .mp4's bytes: FFmpeg reads by content, the suffix only routes
    out = _cli(["bench", str(mpg), "--frames", "2"], tmp_path)
    assert out.returncode == 0 and "packet_to_pack" in out.stdout, out.stderr  # was: "cannot read image"


def test_bench_times_one_size_of_a_video_that_changes_size(tmp_path):
    """`bench` over a video whose size changes times the frames before the change and says so (it
    stopped with a Pipeline-size error and lost them, or mixed two sizes in one table); a file with
    no video stream is a clear error (an IndexError traceback)."""
    write_video(tmp_path / "a.ts", sample_frames(96, 64, 8), container_format="mpegts")
    write_video(tmp_path / "b.ts", sample_frames(160, 112, 8), container_format="mpegts")
    for name, first, second in (("ab.ts", "a.ts", "b.ts"), ("ba.ts", "b.ts", "a.ts")):
        (tmp_path / name).write_bytes((tmp_path / first).read_bytes() + (tmp_path / second).read_bytes())
        out = _cli(["bench", name, "--frames", "20", "--device", "cpu"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert "changes size at frame 8" in out.stdout and "5 frames per device" in out.stdout, out.stdout
    import av

    with av.open(str(tmp_path / "audio.mp4"), "w") as c:  # AAC only
        s = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*s.encode(frame), *s.encode(None)]:
            c.mux(packet)
    out = _cli(["bench", "audio.mp4", "--device", "cpu"], tmp_path)
    assert out.returncode == 2 and "has no video stream" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_bench_times_the_device_asked_for(clip, tmp_path):
    for args in (["--size", "64x48"], [str(clip)]):
        out = _cli(["bench", *args, "--frames", "2", "--device", "cpu"], tmp_path)
        assert out.returncode == 0, out.stderr
        rows = [line.split()[0] for line in out.stdout.splitlines() if line.split()[:1] in (["cpu"], ["cuda"])]
        assert rows and set(rows) == {"cpu"}, out.stdout  # was: no --device (every device, always)


@pytest.mark.parametrize("args, message", [(["--size", "0x0"], "positive integers"),
                                           (["--size", "64x48x3"], "WIDTHxHEIGHT"),
                                           (["CLIP", "--size", "64x48"], "keep their own size"),
                                           (["--device", "tpu"], "--device: 'tpu' is not understood")])
def test_bench_refuses_a_bad_size_before_its_table(clip, tmp_path, args, message):
    out = _cli(["bench", *[str(clip) if a == "CLIP" else a for a in args], "--frames", "2"], tmp_path)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert "p50" not in out.stdout and "Traceback" not in out.stderr  # was: the header, then the error


def test_a_refused_query_moves_nothing():
    """A query map the pipeline refuses (NaN, wrong shape) leaves the pipeline where it was: the next frame gets the next index and the same tokens as in
    a run without the refused call (the texture was built before the map was checked)."""
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    clean = arrcoc_rt.Pipeline(64, 48, device="cpu")
    want = [clean.process(f) for f in frames]
    pipe = arrcoc_rt.Pipeline(64, 48, device="cpu")
    pipe.process(frames[0])
    pipe.process(frames[1])
    nan_map = np.full((3, 4), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        pipe.process(frames[2], query_map=nan_map)
    with pytest.raises(ValueError, match="fits neither"):
        pipe.process(frames[2], query_map=np.zeros((5, 5), np.float32))
    got = pipe.process(frames[2])
    assert got.frame_index == want[2].frame_index == 2
    for name in ("patches", "budgets", "kinds", "previous", "reuse"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want[2], name), err_msg=name)


def test_an_image_folder_follows_the_rules_of_a_source(tmp_path):
    """An image folder is read once and not after close(), as a video source is (it read all its
    frames again); options only a live or video source has are refused, not silently dropped."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.full((24, 32, 3), 40 * k, np.uint8)).save(folder / f"{k:02d}.png")
    src = arrcoc_rt.open(folder)
    assert len(list(src)) == 3
    with pytest.raises(ValueError, match="read once"):
        list(src)
    src = arrcoc_rt.open(folder)
    it = iter(src)
    next(it)
    src.close()  # from the loop (or another thread): the iteration ends
    assert list(it) == []
    with pytest.raises(ValueError, match="closed"):
        iter(src)
    for option in ({"drop_oldest": True}, {"on_full": "block"}, {"queue_size": 4}):
        with pytest.raises(ValueError, match=f"{next(iter(option))}: an image folder is read on demand"):
            arrcoc_rt.open(folder, **option)
    assert arrcoc_rt.open(folder, max_consecutive_errors=2).frame_count == 3
    # counts are ints >= 1 ("3" failed later as "'<' not supported"; 2.5 queue slots were taken)
    video = write_video(tmp_path / "clip.mp4", sample_frames(32, 24, 3))
    for where, option in ((folder, {"max_consecutive_errors": "3"}), (video, {"max_consecutive_errors": 0}),
                          (video, {"queue_size": 2.5})):
        with pytest.raises(ValueError, match=f"{next(iter(option))}: .* must be an int >= 1"):
            arrcoc_rt.open(where, **option)
