"""Bad input gets a clear TypeError/ValueError naming the argument, what it was and what was
expected — never a crash and never a silent cast."""

import numpy as np
import pytest

import arrcoc_rt

FRAME = np.zeros((48, 64, 3), np.uint8)


@pytest.fixture(scope="module")
def builder():
    return arrcoc_rt.TextureBuilder(64, 48, device="cpu")


@pytest.mark.parametrize("frame,exc,pattern", [
    (FRAME.astype(np.float32), TypeError, r"frame: dtype float32 is not supported; expected uint8"),
    (FRAME.astype(np.uint16), TypeError, r"dtype uint16 .* expected uint8"),
    (np.zeros((48, 64, 3, 1), np.uint8), ValueError, r"expected shape \(H, W\), \(H, W, 3\) or \(H, W, 4\)"),
    (np.zeros((64,), np.uint8), ValueError, r"got 1 dimensions"),
    (np.zeros((48, 64, 2), np.uint8), ValueError, r"2 channels is not supported; expected 3 .* or 4"),
    (np.zeros((0, 64, 3), np.uint8), ValueError, r"size 64x0 is empty"),
    (np.zeros((48, 65, 3), np.uint8), ValueError, r"65x48 \(width x height\) is larger than this TextureBuilder's maximum 64x48"),
    (np.zeros((49, 64), np.uint8), ValueError, r"larger than this TextureBuilder's maximum"),
    (FRAME[:, ::-1], ValueError, r"negative strides"),
    (FRAME[::-1], ValueError, r"negative strides"),
    (np.zeros((48, 128, 3), np.uint8)[:, ::2], ValueError, r"do not describe packed pixels"),
    (np.zeros((48, 64, 4), np.uint8)[..., :3], ValueError, r"do not describe packed pixels"),
    (np.asfortranarray(FRAME), ValueError, r"do not describe packed pixels"),
    ("frame.png", TypeError, r"expected a NumPy array, a DLPack tensor"),
    (None, TypeError, r"got NoneType"),
])
def test_bad_frames(builder, frame, exc, pattern):
    with pytest.raises(exc, match=pattern):
        builder.build(frame)


def test_row_padded_and_cropped_frames_are_fine(builder):
    """Positive row strides larger than a row (crops, padded buffers) are handled zero-copy."""
    big = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    crop = big[10:58, 20:84]
    assert not crop.flags.c_contiguous
    a = np.asarray(builder.build(crop).channel("luminance"), np.float32)
    b = np.asarray(builder.build(np.ascontiguousarray(crop)).channel("luminance"), np.float32)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(pixel_format="rgb565"), ValueError, r"pixel_format: 'rgb565' is not supported; expected one of rgb24"),
    (dict(pixel_format="rgba32"), ValueError, r"pixel_format 'rgba32' needs 4 channels; got shape \(48, 64, 3\)"),
    (dict(pixel_format="nv12"), TypeError, r"'nv12' takes a tuple of 2 planes \(Y, UV\)"),
    (dict(pixel_format="gray8"), ValueError, r"'gray8' needs a 2-D array \(H, W\); got shape \(48, 64, 3\)"),
])
def test_bad_pixel_formats(builder, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        builder.build(FRAME, **kwargs)


@pytest.mark.parametrize("stream,exc,pattern", [
    (-5, ValueError, r"stream: -5 is not a CUDA stream handle; expected 0 <= handle < 2\*\*64"),
    (1 << 64, ValueError, r"stream: 18446744073709551616 is not a CUDA stream handle"),
    (True, TypeError, r"stream: expected None, an int handle, .* got bool"),
    ("s", TypeError, r"stream: expected None, an int handle, .* got str"),
])
def test_bad_stream_handles(builder, stream, exc, pattern):
    """A stream handle is a pointer: pybind11 refused a negative or wider int with a message that
    listed the binding's eight arguments instead of naming the stream."""
    with pytest.raises(exc, match=pattern):
        builder.build(FRAME, stream=stream)


def test_bad_yuv_planes(builder):
    y = np.zeros((48, 64), np.uint8)
    with pytest.raises(ValueError, match=r"frame\[1\] \(chroma plane\): shape \(24, 31, 2\) does not fit a 64x48 nv12"):
        builder.build((y, np.zeros((24, 31, 2), np.uint8)), pixel_format="nv12")
    with pytest.raises(ValueError, match=r"expected \(24, 32\)"):
        builder.build((y, np.zeros((24, 32), np.uint8), np.zeros((24, 31), np.uint8)), pixel_format="yuv420p")
    with pytest.raises(TypeError, match=r"frame\[2\]: dtype float64"):
        builder.build((y, np.zeros((24, 32), np.uint8), np.zeros((24, 32))), pixel_format="yuv420p")
    with pytest.raises(ValueError, match=r"Y plane\): expected 2 dimensions"):
        builder.build((FRAME, np.zeros((24, 32, 2), np.uint8)), pixel_format="nv12")


@pytest.mark.parametrize("args,kwargs,exc,pattern", [
    ((0, 48), {}, ValueError, r"width: 0 is out of range; expected 1..16384"),
    ((64, 20000), {}, ValueError, r"height: 20000 is out of range"),
    ((64.5, 48), {}, TypeError, r"width: expected an int; got float"),
    ((64, 48), dict(dtype="float64"), ValueError, r"dtype: 'float64' is not supported; expected 'float16' or 'float32'"),
    ((64, 48), dict(device="tpu"), ValueError, r"device: 'tpu' is not understood"),
    ((64, 48), dict(device=0), TypeError, r"device: expected 'auto', 'cpu'"),
    ((64, 48), dict(fixation=(0.5, 1.5)), ValueError, r"fixation: \(0.5, 1.5\) must lie in \[0, 1\]"),
    ((64, 48), dict(fixation=(float("nan"), 0.5)), ValueError, r"fixation"),
    ((64, 48), dict(fixation="centre"), TypeError, r"fixation: expected a pair"),
    ((64, 48), dict(num_threads=-1), ValueError, r"num_threads: expected an int 0..1024"),
])
def test_bad_builder_arguments(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        arrcoc_rt.TextureBuilder(*args, **kwargs)


def test_set_fixation_rejects_out_of_range(builder):
    with pytest.raises(ValueError, match="fixation"):
        builder.set_fixation(-0.1, 0.5)


@pytest.mark.skipif(arrcoc_rt.cuda_available(), reason="this machine has a usable GPU")
def test_cuda_without_gpu_is_a_clear_error():
    expected = "built without CUDA" if not arrcoc_rt.cuda_built() else "no CUDA GPU is usable"
    with pytest.raises(ValueError, match=expected):
        arrcoc_rt.TextureBuilder(64, 48, device="cuda")
    assert arrcoc_rt.TextureBuilder(64, 48, device="auto").device == "cpu"


def test_cuda_frame_on_cpu_builder_is_a_clear_error(builder):
    class FakeCudaTensor:  # looks like a CUDA tensor to the protocol, never dereferenced
        __cuda_array_interface__ = {"shape": (48, 64, 3), "typestr": "|u1", "data": (0xDEAD0000, False),
                                    "strides": None, "version": 3}

    # Without CUDA the pointer cannot be checked; with it (a GPU or the emulated device) it is
    # found to be no device memory: either way a clear ValueError, before any read.
    with pytest.raises(ValueError, match="in CUDA memory but this builder runs on the CPU|points at host memory"):
        builder.build(FakeCudaTensor())


def test_torch_frames(builder):
    torch = pytest.importorskip("torch")
    f = torch.randint(0, 256, (48, 64, 3), dtype=torch.uint8)
    a = np.asarray(builder.build(f).channel("luminance"), np.float32)
    b = np.asarray(builder.build(f.numpy()).channel("luminance"), np.float32)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="dtype float32 is not supported; expected uint8"):
        builder.build(f.float())
    with pytest.raises(ValueError, match="do not describe packed pixels"):
        builder.build(f.permute(1, 0, 2)[:48, :48])
    g = f.float().requires_grad_()
    with pytest.raises(TypeError, match=r"refused DLPack export|dtype float32"):
        builder.build(g)


def test_cuda_backend_was_compiled_when_ci_expects_it():
    """CI sets ARRCOC_EXPECT_CUDA_BUILD=1 where nvcc exists: the CUDA backend must be in."""
    import os

    if os.environ.get("ARRCOC_EXPECT_CUDA_BUILD") != "1":
        pytest.skip("not a build that must contain CUDA")
    assert arrcoc_rt.cuda_built()
