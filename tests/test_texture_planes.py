"""TextureBuilder(planes='pipeline') (a Pipeline's default): level 0 keeps only red, green, blue
and motion; every plane it does write is the same bits as under planes='all', on every backend,
and the planes it does not write cannot be read by mistake."""

import os
import subprocess
import sys

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R
from conftest import compare_texture, devices, host, pixel_format_frames, poison, real_image

KEPT = {arrcoc_rt.Channel.RED, arrcoc_rt.Channel.GREEN, arrcoc_rt.Channel.BLUE, arrcoc_rt.Channel.MOTION}


def _same_bits(a, b) -> bool:
    a, b = host(a), host(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _assert_same_planes(full, lean, context):
    for k in range(5):
        for c in arrcoc_rt.Texture.channels_at(k):
            assert lean.has_plane(c, k) == (k > 0 or c in KEPT), (context, c, k)
            if lean.has_plane(c, k):
                assert _same_bits(full.channel(c, k), lean.channel(c, k)), f"{context}: {c.name}@L{k}"


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (17, 31), (97, 61), (640, 480)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_written_planes_equal_all_planes(device, dtype, size, rng):
    """Fresh random frames, odd sizes, 4:2:0 and gray input, two frames (motion), 1-3 CPU threads:
    the lean texture's planes are those of the full one, bit for bit, and match the reference."""
    w, h = size
    for threads in ([1, 2, 3] if device == "cpu" else [0]):
        full = arrcoc_rt.TextureBuilder(w, h, device=device, dtype=dtype, num_threads=threads)
        lean = arrcoc_rt.TextureBuilder(w, h, device=device, dtype=dtype, num_threads=threads, planes="pipeline")
        frames = pixel_format_frames(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng)
        for fmt in ("rgb24", "nv12", "yuv420p", "gray8"):
            frame = frames[fmt]
            for step in range(2):  # the second frame has motion
                moved = frame if step == 0 else tuple(np.roll(p, 1, axis=1) for p in frame) \
                    if isinstance(frame, tuple) else np.roll(frame, 3, axis=1)
                poison(full)
                poison(lean)
                a = full.build(moved, pixel_format=fmt)
                b = lean.build(moved, pixel_format=fmt)
                _assert_same_planes(a, b, f"{device} {dtype} {w}x{h} {fmt} frame {step} threads {threads}")
            if fmt == "rgb24":
                compare_texture(b, R.build_texture(moved, previous=R.build_texture(frame)), dtype, "lean")


@pytest.mark.parametrize("device", devices())
def test_real_photograph(device):
    img = real_image("astronaut")
    h, w = img.shape[:2]
    full = arrcoc_rt.TextureBuilder(w, h, device=device)
    lean = arrcoc_rt.TextureBuilder(w, h, device=device, planes="pipeline")
    for frame in (img, np.roll(img, (-4, 8), axis=(0, 1))):
        poison(lean)
        _assert_same_planes(full.build(frame), lean.build(frame), f"astronaut {device}")


def test_unwritten_planes_raise_and_say_how(rng):
    b = arrcoc_rt.TextureBuilder(64, 48, device="cpu", planes="pipeline")
    t = b.build(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    assert t.has_plane("red") and t.has_plane("motion") and t.has_plane("luminance", 1)
    assert not t.has_plane("luminance") and not t.has_plane("saliency", 0)  # saliency starts at level 1
    with pytest.raises(ValueError, match=r"channel luminance at level 0 is not written.*planes='all'"):
        t.channel("luminance")
    with pytest.raises(ValueError, match="level 0 as a whole"):
        t.level(0)
    with pytest.raises(ValueError, match=r"level 0 as a whole.*channel\(\) reads those"):
        t.to_numpy(0)
    assert set(t.to_numpy(1)) == set(arrcoc_rt.Texture.channels_at(1))
    assert t.level(1).shape[0] == len(arrcoc_rt.Texture.channels_at(1))
    with pytest.raises(ValueError, match="planes: 'some' is not supported; expected one of 'all', 'pipeline'"):
        arrcoc_rt.TextureBuilder(8, 8, planes="some")


@pytest.mark.parametrize("device", devices())
def test_pipeline_tokens_do_not_depend_on_texture_planes(device, rng):
    """A Pipeline (default texture_planes='pipeline') gives the same token pack, relevance and
    clusters as one that writes every plane, frame after frame."""
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)]
    for k in range(1, 4):
        frames.append(np.roll(frames[0], 4 * k, axis=1))
    lean = arrcoc_rt.Pipeline(160, 120, device=device)
    full = arrcoc_rt.Pipeline(160, 120, device=device, texture_planes="all")
    assert lean.texture_builder.planes == "pipeline"
    for f in frames:
        a, b = full.process(f), lean.process(f)
        for name in ("glimpses", "positions", "levels", "budgets", "kinds", "scores", "patches", "relevance",
                     "homunculus", "candidates", "balanced_score"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert _same_bits(a.texture.channel("relevance", 4), b.texture.channel("relevance", 4))
        assert _same_bits(a.texture.channel("cluster_id", 2), b.texture.channel("cluster_id", 2))
    with pytest.raises(ValueError, match="texture_planes: 'none' is not supported"):
        arrcoc_rt.Pipeline(32, 32, device=device, texture_planes="none")


def test_contact_sheet_of_a_pipeline_texture(tmp_path, rng):
    """The channel views show a channel that a Pipeline did not write at level 0 from level 1."""
    pytest.importorskip("PIL")
    from arrcoc_rt.visualize import contact_sheet, save_channels

    r = arrcoc_rt.Pipeline(96, 64, device="cpu").process(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    sheet = contact_sheet(r.texture)
    assert sheet.size[0] > 0 and sheet.getextrema() != ((24, 24), (24, 24), (28, 28))  # not an empty sheet
    paths = save_channels(r.texture, tmp_path)
    assert len(paths) == 40 and all(p.exists() for p in paths)


def _cpu_has_avx512f() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


@pytest.mark.skipif(not _cpu_has_avx512f(), reason="this CPU has no AVX-512: the texture runs its AVX2 path only")
def test_avx512_paths_are_the_same_bits_as_avx2(tmp_path, rng):
    """Where the CPU has AVX-512 the entropy lookup and the mips take it (two-register permutes); a
    process with ARRCOC_CPU_NO_AVX512=1 takes the AVX2 paths. Every plane of both is the same bits, at
    widths around the 16- and 8-pixel steps (the mips' 32 source columns) and the 256-pixel chunks,
    both dtypes, 1-3 threads."""
    frames = {f"{w}x{h}": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for w, h in [(15, 7), (17, 9), (257, 33), (640, 480)]}
    np.savez(tmp_path / "frames.npz", **frames)
    script = f"""
import sys, numpy as np, arrcoc_rt
frames = np.load({str(tmp_path / 'frames.npz')!r})
out = {{}}
for name in frames.files:
    f = frames[name]
    for dtype in ("float16", "float32"):
        for nt in (1, 2, 3):
            t = arrcoc_rt.TextureBuilder(f.shape[1], f.shape[0], device="cpu", dtype=dtype, num_threads=nt,
                                         planes="all").build(f)
            for k in range(5):
                for c in arrcoc_rt.Texture.channels_at(k):
                    out[f"{{name}}_{{dtype}}_{{nt}}_{{int(c)}}_{{k}}"] = np.asarray(t.channel(c, k))
np.savez(sys.argv[1], **out)
"""
    results = {}
    for path in ("avx512", "avx2"):
        env = dict(os.environ)
        env.pop("ARRCOC_CPU_NO_AVX512", None)
        if path == "avx2":
            env["ARRCOC_CPU_NO_AVX512"] = "1"
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{path}.npz")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        results[path] = np.load(tmp_path / f"{path}.npz")
    a, b = results["avx512"], results["avx2"]
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 1000
    for key in a.files:
        assert np.array_equal(a[key].view(np.uint8), b[key].view(np.uint8)), key
