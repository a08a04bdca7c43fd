"""The edges of the Python API and the CLI that users of torchcodec, PyAV and transformers run
into: errors, exports, messages, conventions and summaries."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import arrcoc_rt


def test_star_import_keeps_builtin_open():
    ns = {}
    exec("from arrcoc_rt import *", ns)
    assert "open" not in ns and arrcoc_rt.open is not open
    assert "open" not in arrcoc_rt.__all__


@pytest.mark.parametrize("argv", [["demo", "--device", "cuda:7"], ["run", "nothing.mp4"],
                                  ["texture", "--device", "cuda:7"], ["bench", "missing.png"]])
def test_every_subcommand_answers_bad_input_in_one_line_with_exit_code_2(argv, tmp_path):
    out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip().startswith("arrcoc-rt: error:"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_swapped_sizes_are_named():
    pipe = arrcoc_rt.Pipeline(360, 640, device="cpu")
    with pytest.raises(ValueError, match=r"640x360 \(width x height\) is larger than this Pipeline's maximum "
                                         r"360x640; sizes are \(width, height\): did you mean Pipeline\(640, 360\)"):
        pipe.process(np.zeros((360, 640, 3), np.uint8))
    with pytest.raises(ValueError, match=r"this TextureBuilder's maximum 64x48; create a TextureBuilder\(100, 48\)"):
        arrcoc_rt.TextureBuilder(64, 48, device="cpu").build(np.zeros((48, 100, 3), np.uint8))


def test_encoder_time_has_its_own_key_and_frame_indices_agree():
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    pipe = arrcoc_rt.Pipeline(64, 48, device="cpu", encoder="builtin")
    for i in range(2):
        r = pipe.process(img)
        assert set(r.timings) == {"texture", "encoder", "cascade", "allocate_and_gather", "total"}
        assert r.timings["total"] >= r.timings["texture"] + r.timings["encoder"]
        assert r.frame_index == r.texture.frame_index == i


def test_reprs_are_short_summaries(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with arrcoc_rt.Stream(device="cpu") as stream:
        r = stream.process(img)
    text = repr(r)
    assert len(text) < 400 and "scene_cut=False" in text and "saccades" in text, text
    assert "Pipeline(64x48" in repr(stream) and "closed" in repr(stream)
    assert stream.pipeline is not None and stream.pipeline.config["saccades"] == 273  # still inspectable
    with pytest.raises(ValueError, match="closed"):
        stream.process(img)
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with arrcoc_rt.open(str(path)) as src:
        m = src.metadata
        assert (m["codec"], m["width"], m["height"], m["fps"]) == ("mpeg4", 64, 48, 25.0)
        assert "mpeg4 64x48" in repr(src) and "25 fps" in repr(src)


def test_a_plot_that_cannot_be_written_is_an_error(tmp_path, monkeypatch):
    pytest.importorskip("av")
    from arrcoc_rt import cli

    try:
        import matplotlib  # noqa: F401
        pytest.skip("matplotlib is installed: the plot can be written")
    except ImportError:
        pass
    clip = tmp_path / "c"
    clip.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(clip / "a.png")
    assert cli.main(["run", str(clip), "--plot", str(tmp_path / "x.png"), "--quiet"]) == 2


def test_arguments_after_the_obvious_ones_are_keywords():
    with pytest.raises(TypeError):
        arrcoc_rt.Stream("clip.mp4")  # once silently a text query
    with pytest.raises(TypeError):
        arrcoc_rt.Pipeline(64, 48, "cpu")
    with pytest.raises(TypeError):
        arrcoc_rt.TextureBuilder(64, 48, "cpu", "float32")
    with pytest.raises(TypeError):
        arrcoc_rt.ClusterCascade(64, 48, "cpu")
    assert arrcoc_rt.Pipeline(64, 48, device="cpu").device == "cpu"


def test_queries_are_named_and_never_guessed(tmp_path):
    from PIL import Image

    img = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(img[8:40, 8:40]).save(tmp_path / "ex.png")
    with pytest.raises(TypeError, match="string is ambiguous"):
        arrcoc_rt.Stream(query=str(tmp_path / "ex.png"))
    s = arrcoc_rt.Stream(query_image=str(tmp_path / "ex.png"), device="cpu")
    assert s.process(img).num_saccades > 0 and type(s.pipeline.encoder).__name__ == "BuiltinEncoder"
    q = arrcoc_rt.Query.image(tmp_path / "ex.png")
    assert q.kind == "image" and "Query.image(" in repr(q)
    with pytest.raises(ValueError, match="query_map: expected a 2-D numeric map"):
        arrcoc_rt.Query.map(np.ones(4))
    pipe = arrcoc_rt.Pipeline(64, 48, device="cpu", encoder="builtin")
    a = pipe.process(img, query_image=img[8:40, 8:40])
    pipe.reset()
    b = pipe.process(img, query=arrcoc_rt.Query.image(str(tmp_path / "ex.png")))
    np.testing.assert_array_equal(a.patches, b.patches)  # the same exemplar, given two ways
    # An exemplar under one 8-px layout cell holds almost no texture: warned about (it was silent).
    with pytest.warns(RuntimeWarning, match="smaller than one 8-px layout cell"):
        pipe.process(img, query_image=np.ascontiguousarray(img[8:10, 8:10]))


def test_the_cli_has_a_version_and_help_on_every_argument():
    from arrcoc_rt import cli

    out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"arrcoc-rt {arrcoc_rt.__version__}"
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{name} {a.dest}" for name, p in sub.choices.items() for a in p._actions
               if a.help is None and a.dest != "help"]
    assert not missing, missing


def test_tokens_carry_boxes_and_the_overlay_is_exported(tmp_path):
    img = np.random.default_rng(5).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    pipe = arrcoc_rt.Pipeline(200, 120, device="cpu")
    r = pipe.process(img)
    b = r.boxes
    assert b.shape == (len(r.kinds), 4) and b.dtype == np.float32
    real = r.kinds >= 0
    assert np.all(b[~real] == -1)
    assert np.all((b[real, 0] <= r.positions[real, 0]) & (r.positions[real, 0] <= b[real, 2]))
    assert np.all(b[real, :2] >= 0) and np.all(b[real, 2] <= 200) and np.all(b[real, 3] <= 120)
    G = pipe.config["gestalt_x"] * pipe.config["gestalt_y"]
    # an unclipped level-3 gestalt glimpse covers 16 * 8 = 128 px; every box is at most that
    assert np.all(b[real, 2] - b[real, 0] <= 16 * 2 ** r.levels[real] + 1e-3)
    drawn = arrcoc_rt.overlay(img, r)
    assert drawn.shape == img.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, img)
    assert G > 0 and "overlay" in arrcoc_rt.__all__


def test_renamed_fields_warn_and_budget_has_one_name():
    img = np.random.default_rng(6).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    r = arrcoc_rt.Pipeline(64, 48, device="cpu").process(img)
    for old, new in (("tokens", "glimpses"), ("info", "info_score"), ("salience", "salience_score"),
                     ("query", "query_score"), ("balanced", "balanced_score")):
        with pytest.warns(DeprecationWarning, match=f"FrameResult.{old} is renamed {new}"):
            assert getattr(r, old) is getattr(r, new)
    with pytest.warns(DeprecationWarning, match="renamed total_budget"):
        s = arrcoc_rt.Stream(device="cpu", budget=50000)
    assert s.process(img) is not None and s.pipeline.config["total_budget"] == 50000


def test_chw_frames_batches_and_torch_tensors_back():
    img = np.random.default_rng(7).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    want = arrcoc_rt.Pipeline(64, 48, device="cpu").process(img)
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))  # torchcodec's [3, H, W]
    for frame, layout in ((chw, None), (chw, "CHW"), (chw.transpose(1, 2, 0), None)):  # the last: a permuted view
        got = arrcoc_rt.Pipeline(64, 48, device="cpu").process(frame, layout=layout)
        np.testing.assert_array_equal(got.patches, want.patches)
        np.testing.assert_array_equal(got.glimpses, want.glimpses)
    tex = arrcoc_rt.TextureBuilder(64, 48, device="cpu", dtype="float32").build(chw)
    ref = arrcoc_rt.reference.build_texture(chw, "rgbp")
    np.testing.assert_allclose(np.asarray(tex.channel(0)), ref.channel(0, 0), atol=1e-6)
    with pytest.raises(ValueError, match="layout 'CHW' needs 3 colour planes first"):
        arrcoc_rt.Pipeline(64, 48, device="cpu").process(img, layout="CHW")
    batch = np.stack([img, np.roll(img, 4, axis=1), img])
    with arrcoc_rt.Stream(device="cpu") as s1, arrcoc_rt.Stream(device="cpu") as s2:
        a = s1.process_many(batch)
        b = s2.process_many(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))  # [N, 3, H, W]
    assert [r.frame_index for r in a] == [0, 1, 2]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.patches, y.patches)
    torch = pytest.importorskip("torch")
    r = arrcoc_rt.Pipeline(64, 48, device="cpu").process(torch.from_numpy(chw), return_tensors="pt")
    assert isinstance(r.glimpses, torch.Tensor) and isinstance(r.budgets, torch.Tensor)
    np.testing.assert_array_equal(r.patches.numpy(), want.patches)
    assert r.boxes.shape == (len(r.kinds), 4)


def _clip(path, n=50, fps=25, size=(64, 48)):
    av = pytest.importorskip("av")
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.gop_size = 10  # keyframes to seek to
        for i in range(n):
            img = np.full((h, w, 3), (i * 5) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_ranges_and_sampling(tmp_path):
    path = tmp_path / "clip.mp4"
    _clip(path)
    with arrcoc_rt.open(str(path), start=1.0, end=1.6) as src:  # 25 fps: frames 25..39
        times = [round(f.time, 3) for f in src]
    assert times == [round(i / 25, 3) for i in range(25, 40)]
    with arrcoc_rt.open(str(path), fps=5) as src:
        times = [round(f.time, 3) for f in src]
    assert times == [round(i / 25, 3) for i in range(0, 50, 5)]
    with arrcoc_rt.open(str(path), stride=3, end=0.5) as src:
        assert [round(f.time, 3) for f in src] == [round(i / 25, 3) for i in range(0, 13, 3)]
    with pytest.raises(ValueError, match="end: 1.0 must be after start 2.0"):
        arrcoc_rt.open(str(path), start=2.0, end=1.0)
    out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "run", str(path), "--start", "1", "--fps", "2",
                          "--device", "cpu", "--quiet", "--jsonl", str(tmp_path / "t.jsonl")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "frames: 2;" in out.stdout  # t = 1.0 and 1.5


def test_run_takes_the_pipeline_settings_and_writes_a_summary(tmp_path):
    import json

    path = tmp_path / "clip.mp4"
    _clip(path, n=6)
    out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "run", str(path), "--device", "cpu",
                          "--strategy", "saliency", "--saccades", "40", "--total-budget", "40000",
                          "--out", str(tmp_path / "o.mp4")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "frame/s" not in out.stderr and "\r" not in out.stderr  # no progress bar when not on a terminal
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["frames"] == 6 and s["settings"]["strategy"] == "saliency" and s["settings"]["saccades"] == 40
    assert s["settings"]["total_budget"] == 40000 and s["latency_ms"]["50"] > 0
    av = pytest.importorskip("av")
    from arrcoc_rt.visualize import overlay_codec

    with av.open(str(tmp_path / "o.mp4")) as c:
        codec = c.streams.video[0].codec_context.name
    assert codec == {"libx264": "h264"}.get(overlay_codec(), overlay_codec())
