"""Shared test helpers: backends to run on, real images, fresh random frames, tolerances.

Tolerances (why):
- float32 storage: flash-attention's rule, as measured: a plain float32 NumPy implementation of the
  level-0 formulas and the mips (float32 arithmetic in the reference's order: 25-term box sums,
  Sobel, the entropy table) is at most rel L2 9.8e-7 and max abs 2.8e-7 from float64 on random
  640x480 frames and photographs (the backend: 9.2e-7 and 2.0e-7); the limits are about twice
  that: rel L2 <= 2e-6 (of the plane's norm, or of values of 0.1 where it is smaller: differences
  such as motion keep their inputs' absolute error), max abs <= 1e-6 per channel and level
  (FLOAT32_REL_L2, FLOAT32_MAX_ABS).
  Local contrast is exact integer moments then one square root, so it needs no more. (They were
  1e-4 and 2e-4: a luminance weight 4e-5 off passed.) The max-abs bound catches a wrong border row
  that an L2 norm over a big image would hide.
- float16 storage: flash-attention's rule. A plain float16 implementation (the reference rounded
  to float16 at each level, each mip level averaged from the stored float16 level above, as
  our kernels do) has some error against float64; ours may be at most 2x that (+1e-6 for
  channels where the plain error is exactly zero; on planes under 64 texels also the reach of one
  rounding flip carried down the mips, `flip_slack`: on a plane of a few texels that flip alone
  exceeds 2x, in about one of 200 random 17x31 frames).
- Exact channels (motion vectors: integer SAD on integer luma) must match bit for bit.
- NaN/inf never passes: outputs are poisoned with NaN before each build and every element of
  every stored plane is checked.
"""

from __future__ import annotations

import os

# Every CPU operator's memory starts as NaN / -1 (csrc/core/arena.h), as the emulated device's does:
# an output a kernel never writes fails the comparisons instead of reading as zeroed pages.
os.environ.setdefault("ARRCOC_POISON_ALLOCATIONS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import arrcoc_rt  # noqa: E402
from arrcoc_rt import reference as R


def devices() -> list:
    """Backends to parametrize over: 'cpu' always, 'cuda' marked needs_cuda: a GPU, or the emulated
    device of a test build (ARRCOC_CUDA=EMULATE; see docs/TESTING.md). Skips without either."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


EMULATED = arrcoc_rt.cuda_available() and arrcoc_rt.cuda.is_emulated()


# Modules that drive the native code with bad, odd, random and concurrent inputs: CI runs them again
# (pytest -m sanitize) against the AddressSanitizer + UndefinedBehaviorSanitizer build
# (docs/RELIABILITY.md); the rest (CLI, encoders, VLM adapters, streaming) adds time, not native paths.
SANITIZE_MODULES = {"test_cascade", "test_cuda_host", "test_dlpack", "test_fuzz_regressions", "test_half",
                    "test_pipeline", "test_properties", "test_sanitizers", "test_semantic", "test_texture_errors",
                    "test_texture_motion", "test_texture_planes", "test_texture_reference", "test_threads", "test_stream_group",
                    "test_cuda_graphs"}
# The two largest frame sizes add time under the sanitizers (their float64 references), not native
# paths: the plain emulated run (.ci/run step 2) runs their CUDA cases instead.
SANITIZE_SKIPS_SIZES = ("1920x1080", "1023x769")
SANITIZE_TESTS = {  # and these of other modules: decoder planes handed over zero-copy, damaged files, drops
    "test_stream.py::" + name for name in (
        "test_stream_over_a_file_counts_every_frame_with_pts", "test_av_frames_of_every_format_match_numpy",
        "test_resolution_and_format_change_mid_stream", "test_truncated_and_corrupted_files_never_crash",
        "test_resolution_change_inside_a_file", "test_drop_oldest_counts_every_drop")}


def pytest_collection_modifyitems(config, items):
    no_cuda = ("no usable CUDA GPU and not the emulated device" if arrcoc_rt.cuda_built()
               else "arrcoc_rt was built without CUDA")
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module is not None else ""
        if ((module in SANITIZE_MODULES or f"{module}.py::{item.originalname}" in SANITIZE_TESTS)
                and "slow" not in item.keywords and not any(size in item.name for size in SANITIZE_SKIPS_SIZES)):
            item.add_marker(pytest.mark.sanitize)
        if "needs_cuda" in item.keywords and not arrcoc_rt.cuda_available():
            item.add_marker(pytest.mark.skip(reason=no_cuda))
        if "needs_gpu" in item.keywords and (EMULATED or not arrcoc_rt.cuda_available()):
            item.add_marker(pytest.mark.skip(reason="needs real GPU hardware (torch/CuPy CUDA tensors or timings)"))
        if "needs_emulator" in item.keywords and not EMULATED:
            item.add_marker(pytest.mark.skip(reason="needs the emulated CUDA device (ARRCOC_CUDA=EMULATE build)"))


def pytest_report_header(config):
    if EMULATED:
        return [f"arrcoc_rt CUDA: EMULATED on the CPU ({arrcoc_rt._native.cuda_device_count()} devices)"]
    return [f"arrcoc_rt CUDA: {'built' if arrcoc_rt.cuda_built() else 'not built'}, "
            f"{arrcoc_rt._native.cuda_device_count() if arrcoc_rt.cuda_built() else 0} GPU(s)"]


def write_video(path, frames, codec="mpeg4", rate=10, container_format=None):
    """Encodes H x W x 3 uint8 frames into a real video file with PyAV (yuv420p); returns ``path``."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=container_format) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory):
    """A tiny random LLaVA-1.5 checkpoint folder (tests/vlm_models.py), built once per session;
    skips without torch, transformers and tokenizers."""
    for module in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from vlm_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture
def rng(request):
    """A fresh random generator per test and run; the seed is printed so failures reproduce."""
    seed = int.from_bytes(os.urandom(4), "little") if "ARRCOC_TEST_SEED" not in os.environ \
        else int(os.environ["ARRCOC_TEST_SEED"])
    print(f"{request.node.name}: ARRCOC_TEST_SEED={seed}")
    return np.random.default_rng(seed)


def real_image(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


REAL_IMAGES = ["astronaut", "coffee", "chelsea", "rocket"]


host = arrcoc_rt.to_host


def to_numpy(a) -> np.ndarray:
    """Texture arrays from any backend as float64 NumPy."""
    if isinstance(a, np.ndarray):
        return a.astype(np.float64)
    return a.numpy().astype(np.float64)  # DeviceArray: host copy


def rel_l2(out: np.ndarray, ref: np.ndarray, floor: float = 1e-3) -> float:
    """||out - ref|| / max(||ref||, floor * sqrt(n)): relative, with an absolute floor for ~zero planes."""
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), floor * np.sqrt(ref.size)))


def plain_float16(ref: R.ReferenceTexture) -> list[dict]:
    """What a plain float16 implementation stores: each level rounded to float16, mips of
    mipmapped channels averaged from the stored float16 level above."""
    out = []
    for k, lev in enumerate(ref.levels):
        cur = {}
        for c, plane in lev.items():
            b = R.channel_base_level(c)
            if k > b and c < 17 and c != 13:
                plane = R.mip_down(out[k - 1][c].astype(np.float64))
            cur[c] = plane.astype(np.float16)
        out.append(cur)
    return out


def pixel_format_frames(rgb: np.ndarray, rng) -> dict:
    """The same picture in every pixel format (YUV ones from random planes)."""
    h, w = rgb.shape[:2]
    ch, cw = (h + 1) // 2, (w + 1) // 2
    rgba = np.concatenate([rgb, rng.integers(0, 256, (h, w, 1), dtype=np.uint8)], axis=2)
    y = rng.integers(16, 236, (h, w), dtype=np.uint8)
    u = rng.integers(16, 241, (ch, cw), dtype=np.uint8)
    v = rng.integers(16, 241, (ch, cw), dtype=np.uint8)
    return {
        "rgb24": rgb,
        "bgr24": np.ascontiguousarray(rgb[..., ::-1]),
        "rgba32": rgba,
        "bgra32": np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]),
        "gray8": np.ascontiguousarray(rgb[..., 1]),
        "nv12": (y, np.ascontiguousarray(np.stack([u, v], axis=2))),
        "yuv420p": (y, u, v),
        # planar RGB in a padded buffer (row pitch > width): torchcodec's [3, H, W], cropped
        "rgbp": np.pad(rgb.transpose(2, 0, 1), ((0, 0), (0, 1), (0, 3)))[:, :h, :w],
    }


def poison(builder: arrcoc_rt.TextureBuilder) -> None:
    """Fill the builder's whole texture buffer with NaN (catches unwritten elements); keeps the
    motion history."""
    builder._native.poison_output()


# float32 storage (module docstring): about twice what a plain float32 NumPy implementation of the
# same formulas reaches against float64 (measured: rel L2 <= 9.8e-7, max abs <= 2.8e-7).
FLOAT32_REL_L2, FLOAT32_MAX_ABS = 2e-6, 1e-6
# A value stored in a float16 plane, against its float32 result: twice the rounding of a float16
# store (relative), the flash-attention rule with the store as the plain same-precision version.
FLOAT16_STORE_REL = 2 * 2.0**-11

# Planes this small (levels 3-4 of tiny frames) get flip_slack on top of the 2x rule.
SMALL_PLANE = 64


def flip_slack(ref: R.ReferenceTexture, c: int, k: int) -> float:
    """How far one rounding flip can carry into level k: a value next to a float16 rounding
    boundary at the channel's base level can round the other way after float32 arithmetic than
    after float64 (one step at that level's largest value), and each mip level rounds the mean of
    that difference again (at most half of it: an edge texel of an odd size counts twice, plus one
    step of its own). On a plane of a few texels that one flip alone exceeds twice the plain error
    (about one random 17x31 frame in 200); on larger planes it is diluted and no slack is given."""
    def step(level: int) -> float:
        plane = ref.channel(c, level)
        return float(np.spacing(np.float16(np.max(np.abs(plane))))) if plane.size else 0.0

    base = R.channel_base_level(c)
    slack = step(base)
    for level in range(base + 1, k + 1):
        slack = slack / 2 + step(level)
    return slack


def compare_texture(tex: arrcoc_rt.Texture, ref: R.ReferenceTexture, dtype: str, context: str = "") -> None:
    """Every channel the texture holds, at every level, against the reference, with the tolerances
    above (level-0 planes a builder with planes='pipeline' does not write are skipped)."""
    plain = plain_float16(ref) if dtype == "float16" else None
    failures = []
    for k in range(R.NUM_LEVELS):
        for c in arrcoc_rt.Texture.channels_at(k):
            if not tex.has_plane(c, k):
                continue
            out = to_numpy(tex.channel(c, k))
            want = ref.channel(c, k)
            name = f"{c.name.lower()}@L{k}"
            if out.shape != want.shape:
                failures.append(f"{name}: shape {out.shape} != {want.shape}")
                continue
            if not np.all(np.isfinite(out)):
                failures.append(f"{name}: {np.count_nonzero(~np.isfinite(out))} non-finite elements (unwritten?)")
                continue
            if c in (arrcoc_rt.Channel.MOTION_X, arrcoc_rt.Channel.MOTION_Y):
                if not np.array_equal(out, want):
                    failures.append(f"{name}: motion vectors differ in {np.count_nonzero(out != want)} blocks")
                continue
            err = rel_l2(out, want)
            maxabs = float(np.max(np.abs(out - want))) if out.size else 0.0
            if dtype == "float32":
                # relative to the plane's norm, or to values of 0.1 where the plane is smaller: a
                # difference of two luminances (motion) or colours keeps their absolute float32
                # error (3e-8 on a 1x1 motion of 8.5e-3 is 3.9e-6 of it)
                floor = 0.1 * np.sqrt(want.size)
                err = float(np.linalg.norm(out - want)) / max(float(np.linalg.norm(want)), floor) if want.size else 0.0
                if err > FLOAT32_REL_L2 or maxabs > FLOAT32_MAX_ABS:
                    failures.append(f"{name}: rel L2 {err:.2e} (limit {FLOAT32_REL_L2:g}), max abs {maxabs:.2e} "
                                    f"(limit {FLOAT32_MAX_ABS:g})")
            else:
                p = plain[k][int(c)].astype(np.float64)
                perr = rel_l2(p, want)
                pmax = float(np.max(np.abs(p - want))) if p.size else 0.0
                slack = flip_slack(ref, int(c), k) if want.size < SMALL_PLANE else 0.0
                slack_l2 = slack / max(float(np.linalg.norm(want)), 1e-3 * np.sqrt(want.size)) if want.size else 0.0
                if err > 2 * perr + slack_l2 + 1e-6 or maxabs > 2 * pmax + slack + 1e-6:
                    failures.append(f"{name}: rel L2 {err:.2e} vs plain float16 {perr:.2e}; "
                                    f"max abs {maxabs:.2e} vs {pmax:.2e} (limit 2x)")
    assert not failures, f"{context}: " + "; ".join(failures)
