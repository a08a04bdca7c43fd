"""What a GPU user mixing arrcoc_rt with torch or CuPy gets wrong, or does in an order nobody
planned: memory released while kernels still read it, results that outlive their objects,
streams and planes of another device, closed streams, read-only destinations, odd CUDA array
interfaces and DLPack arguments. Each was found by a review on the emulated device; each gives the
right result or a clear error. (The producers below recycle their memory the moment they are
released, as torch's caching allocator does.)"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import _native
from arrcoc_rt.samples import sample_frames


def _two_devices():
    if not arrcoc_rt.cuda_available() or _native.cuda_device_count() < 2:
        pytest.skip("needs two CUDA devices (the emulated device has two with ARRCOC_EMU_DEVICES=2)")


class _RecycledOnRelease:
    """A CUDA array interface over `slab` whose memory is overwritten (on another stream) the
    moment the object is released, like a tensor of a caching allocator."""

    def __init__(self, slab, shape, typestr, scribble_stream, scribble):
        self.__cuda_array_interface__ = dict(shape=shape, typestr=typestr, data=(slab.data_ptr, False),
                                             strides=None, version=3, stream=None)
        self._slab, self._stream, self._scribble = slab, scribble_stream, scribble

    def __del__(self):
        _native.cuda_upload(self._slab.data_ptr, self._scribble, self._stream.cuda_stream)


@pytest.mark.needs_cuda
def test_a_frame_outlives_a_dropped_builder_until_its_kernels_ran():
    from arrcoc_rt import cuda

    h, w = 48, 64
    img = sample_frames(w, h, 1)[0]
    want = arrcoc_rt.TextureBuilder(w, h, device="cpu").build(img).channel(0, 0).astype(np.float32)
    slab, s, other = cuda.to_device(img, 0), cuda.Stream(0), cuda.Stream(0)
    b = arrcoc_rt.TextureBuilder(w, h, device="cuda:0")
    frame = _RecycledOnRelease(slab, (h, w, 3), "|u1", other, np.zeros((h, w, 3), np.uint8))
    red = b.build(frame, stream=s).channel(0, 0)  # only the view is kept
    del frame, b
    gc.collect()  # was: the frame released with the Python builder, its kernels still queued
    s.synchronize()
    np.testing.assert_allclose(red.numpy().astype(np.float32), want, atol=1e-3)


@pytest.mark.needs_cuda
def test_a_gather_keeps_its_features_until_it_ran():
    from arrcoc_rt import cuda

    frame = sample_frames(64, 48, 1)[0]
    pipe = arrcoc_rt.Pipeline(64, 48, device="cuda:0")
    s, g, other = cuda.Stream(0), cuda.Stream(0), cuda.Stream(0)
    r = pipe.process(frame, copy=False, stream=s)
    kinds = arrcoc_rt.to_host(r.kinds)
    n = len(kinds)
    slab = cuda.to_device(np.ones((4, 3, 4), np.float32))
    features = _RecycledOnRelease(slab, (4, 3, 4), "<f4", other, np.full((4, 3, 4), 99.0, np.float32))
    out = cuda.to_device(np.full((n, 4), -5.0, np.float32))  # the caller's own memory: writable
    r.gather_features(features, out=out, stream=g)
    del features
    gc.collect()
    pipe.process(frame, copy=False, stream=s)  # was: the features let go here, the gather still queued
    gc.collect()
    g.synchronize()
    got = out.numpy()
    assert not np.any(got > 1.0 + 1e-6), "the gather read recycled memory (99)"
    # and it ran: features of ones sample to 1 for every token; padding tokens get 0 (allocate.h)
    valid = kinds >= 0
    assert valid.any() and not valid.all()
    np.testing.assert_allclose(got[valid], 1.0, atol=1e-6)
    np.testing.assert_array_equal(got[~valid], 0.0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda:0", marks=pytest.mark.needs_cuda)])
def test_candidates_outlive_the_pipeline(device):
    frame = sample_frames(64, 48, 1)[0]
    pipe = arrcoc_rt.Pipeline(64, 48, device=device)
    r = pipe.process(frame, copy=False)
    candidates = r.candidates  # a view of the cascade's memory, not the allocator's
    want = np.array(arrcoc_rt.texture.to_host(candidates), copy=True)
    del r, pipe
    gc.collect()
    refill = [arrcoc_rt.Pipeline(64, 48, device=device).process(frame[::-1].copy()) for _ in range(3)]
    np.testing.assert_array_equal(arrcoc_rt.texture.to_host(candidates), want)
    assert refill


@pytest.mark.needs_cuda
def test_the_pipelines_own_results_are_no_destination():
    frame = sample_frames(64, 48, 1)[0]
    pipe = arrcoc_rt.Pipeline(64, 48, device="cuda:0")
    r = pipe.process(frame, copy=False)
    positions = r.positions.numpy()
    features = arrcoc_rt.cuda.to_device(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="read-only"):  # was: the pipeline's positions overwritten
        r.gather_features(features, out=r.positions)
    np.testing.assert_array_equal(r.positions.numpy(), positions)


@pytest.mark.needs_cuda
def test_a_closed_stream_is_refused_not_read_as_the_default_stream():
    from arrcoc_rt import cuda

    s = cuda.Stream(0)
    s.close()
    s.close()  # twice is fine
    assert s.closed and "closed" in repr(s)
    pipe = arrcoc_rt.Pipeline(64, 48, device="cuda:0")
    for call in (lambda: pipe.process(sample_frames(64, 48, 1)[0], stream=s), s.synchronize,
                 lambda: cuda.to_device(np.zeros(4, np.float32), stream=s)):
        with pytest.raises(ValueError, match="closed"):
            call()


@pytest.mark.needs_cuda
def test_streams_and_planes_of_another_device_are_refused():
    _two_devices()
    from arrcoc_rt import cuda

    frame = sample_frames(64, 48, 2)
    pipe = arrcoc_rt.Pipeline(64, 48, device="cuda:0")
    pipe.process(frame[0])
    with pytest.raises(ValueError, match="stream of cuda:1"):  # was: RuntimeError, motion history lost
        pipe.process(frame[1], stream=cuda.Stream(1))
    fresh = arrcoc_rt.Pipeline(64, 48, device="cuda:0")
    fresh.process(frame[0])
    np.testing.assert_array_equal(pipe.process(frame[1]).budgets, fresh.process(frame[1]).budgets)
    # The stage classes, the feature gather and to_device too (they gave a bare CudaError).
    tex = arrcoc_rt.TextureBuilder(64, 48, device="cuda:1").build(frame[0])
    r = arrcoc_rt.Pipeline(64, 48, device="cuda:1").process(frame[0])
    features = cuda.to_device(np.ones((4, 5, 7), np.float32), 1)
    out = cuda.to_device(np.zeros((len(arrcoc_rt.to_host(r.kinds)), 4), np.float32), 1)
    for call in (lambda: arrcoc_rt.ClusterCascade(64, 48, device="cuda:1").run(tex, stream=cuda.Stream(0)),
                 lambda: r.gather_features(features, out, stream=cuda.Stream(0)),
                 lambda: cuda.to_device(frame[0], 1, stream=cuda.Stream(0))):
        with pytest.raises(ValueError, match="stream of cuda:0 but this .* runs on cuda:1"):
            call()


@pytest.mark.needs_cuda
def test_cuda_means_the_current_device_as_in_torch():
    """'cuda' (and a Stream or to_device without a device) is the calling thread's current device,
    as torch.cuda.set_device makes it (it was always cuda:0)."""
    _two_devices()
    import threading

    from arrcoc_rt import cuda

    seen = {}

    def on_device_1():  # a thread of its own: the current device is per thread
        cuda.set_device(1)
        seen["pipeline"] = arrcoc_rt.Pipeline(64, 48, device="cuda").cuda_device
        seen["stream"] = cuda.Stream().device
        seen["array"] = cuda.to_device(np.zeros(3, np.float32)).__dlpack_device__()[1]
        seen["frames"] = arrcoc_rt.Stream(device="cuda")  # fed by another thread below

    t = threading.Thread(target=on_device_1)
    t.start()
    t.join()
    stream = seen.pop("frames")
    assert seen == {"pipeline": 1, "stream": 1, "array": 1}, seen
    # A Stream stays on the device it was made for, whichever thread builds its pipeline (it resolved
    # 'cuda' again there: cuda:0 here)
    stream.process(sample_frames(64, 48, 1)[0])
    assert stream.pipeline.cuda_device == 1 and stream.device == "cuda:1"
    assert arrcoc_rt.Pipeline(64, 48, device="cuda").cuda_device == 0  # this thread's is still 0

    rng = np.random.default_rng(0)
    y = cuda.to_device(rng.integers(0, 256, (48, 64), np.uint8), 0)
    uv = cuda.to_device(rng.integers(0, 256, (24, 32, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="one device"):  # was: a kernel reading cuda:1 memory (a crash)
        arrcoc_rt.TextureBuilder(64, 48, device="cuda:0").build((y, uv), pixel_format="nv12")


class _Interface:
    def __init__(self, **fields):
        self.__cuda_array_interface__ = dict(dict(shape=(48, 64, 3), typestr="|u1", data=(1 << 20, False),
                                                  strides=None, version=3), **fields)


@pytest.mark.parametrize("fields, message", [
    (dict(mask=object()), "mask"),
    (dict(data=(1 << 64, False)), "not an address"),
], ids=["mask", "pointer-past-64-bits"])
def test_odd_cuda_array_interfaces_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        arrcoc_rt.TextureBuilder(64, 48, device="cpu").build(_Interface(**fields))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(stream=-7), ValueError, "not a CUDA stream handle"),
    (dict(stream=1 << 64), ValueError, "not a CUDA stream handle"),
    (dict(stream="x"), TypeError, "stream must be None or an int"),
    (dict(max_version=()), TypeError, "max_version"),
    (dict(dl_device=(2, 0)), BufferError, "another device"),  # kDLCUDA: the array is in host memory
    (dict(dl_device="cpu"), TypeError, "dl_device"),
])
def test_dlpack_export_arguments_are_checked(kwargs, error, message):
    a = _native._export_host_memory_for_test(np.zeros((2, 3), np.float32))
    with pytest.raises(error, match=message):
        a.__dlpack__(**kwargs)
    a.__dlpack__(stream=None, max_version=(1, 0))  # the same call with good arguments works


@pytest.mark.needs_cuda
def test_zero_copy_gathers_let_go_of_their_inputs_once_done():
    """Gathering every frame of a copy=False loop holds only the gathers the device has not run
    (was: every one, until a copy=True frame: the features of a whole video)."""
    from arrcoc_rt import cuda

    pipe = arrcoc_rt.Pipeline(64, 48, device="cuda:0")
    s = cuda.Stream(0)
    features = cuda.to_device(np.ones((4, 3, 4), np.float32))
    for i, frame in enumerate(sample_frames(64, 48, 12)):
        r = pipe.process(frame, copy=False, stream=s)
        out = cuda.to_device(np.zeros((int(r.kinds.shape[0]), 4), np.float32))
        r.gather_features(features, out=out, stream=s)
    assert len(pipe._gathers) <= 2, len(pipe._gathers)  # the emulator runs queued work when asked
    pipe.synchronize()
    assert not pipe._gathers


@pytest.mark.needs_cuda
def test_a_stream_that_names_no_device_is_taken():
    class CupyNullStream:  # cupy.cuda.Stream.null: ptr 0, device_id -1 ("no device")
        ptr, device_id = 0, -1

    b = arrcoc_rt.TextureBuilder(64, 48, device="cuda:0")
    b.build(sample_frames(64, 48, 1)[0], stream=CupyNullStream())  # was: "a stream of cuda:-1"
    b.synchronize()


@pytest.mark.needs_cuda
@pytest.mark.needs_emulator
def test_a_pipeline_larger_than_the_device_memory_is_a_memory_error_that_says_so():
    """Out of device memory is a MemoryError naming the allocation, its size and CUDA's reason (it
    was a bare 'std::bad_alloc'). The emulated device has 16 GB: every float32 plane of a 16384 x
    16384 texture is about 22 GB."""
    with pytest.raises(MemoryError, match=r"cudaMalloc of \d+ bytes \(20\.\d\d GiB\) failed: .*memory"):
        arrcoc_rt.TextureBuilder(16384, 16384, device="cuda", dtype="float32", planes="all")
    arrcoc_rt.Pipeline(64, 48, device="cuda").process(np.zeros((48, 64, 3), np.uint8))  # the device still works


@pytest.mark.needs_cuda
def test_small_cuda_helpers_keep_shapes_and_names():
    """A 0-d array stays 0-d on the device (it became shape (1,)); a float in pinned_empty's shape is
    refused (it was truncated); a group on cuda:1 says so (it said 'cuda')."""
    from arrcoc_rt import cuda

    a = cuda.to_device(np.array(5, np.int32))
    assert a.shape == () and int(a.numpy()) == 5
    with pytest.raises(TypeError, match="not a tuple of ints"):
        cuda.pinned_empty((2.7, 3))
    assert cuda.pinned_empty((2, 3)).shape == (2, 3)
    if _native.cuda_device_count() >= 2:
        assert "device='cuda:1'" in repr(arrcoc_rt.StreamGroup(64, 48, 2, device="cuda:1"))


@pytest.mark.needs_cuda
def test_queries_in_device_memory_name_what_is_needed():
    """A query map or exemplar in device memory is a TypeError that says a host array is needed
    (it read as 'got object ()')."""
    from arrcoc_rt import cuda

    for q in (lambda d: arrcoc_rt.Query.map(d), lambda d: arrcoc_rt.Query.image(d)):
        with pytest.raises(TypeError, match="a host array is needed"):
            q(cuda.to_device(np.zeros((48, 64, 3), np.uint8)))
