"""The Python side of the CUDA host code: devices, streams and lifetimes (regression tests of the
bugs found by reading it; each fails on the emulated device without its fix). Results are
compared with the CPU backend, which the other tests compare with the float64 reference."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import _native
from conftest import EMULATED, host, real_image

pytestmark = pytest.mark.needs_cuda

W, H = 96, 72


def two_devices():
    if not arrcoc_rt.cuda_available() or _native.cuda_device_count() < 2:
        pytest.skip("needs two CUDA devices (the emulated build offers two: ARRCOC_EMU_DEVICES=2)")


def frame(seed: int = 0) -> np.ndarray:
    img = real_image("coffee")
    y, x = 40 + 7 * seed, 60 + 11 * seed
    return np.ascontiguousarray(img[y:y + H, x:x + W])


def assert_same_tokens(a, b):
    for name in ("positions", "levels", "budgets", "kinds", "patches"):
        np.testing.assert_array_equal(host(getattr(a, name)), host(getattr(b, name)), err_msg=name)
    np.testing.assert_allclose(host(a.glimpses), host(b.glimpses), atol=1e-5)


class CudaArrayInterfaceOnly:
    """Exposes another array only through __cuda_array_interface__ (as Numba or older CuPy do)."""

    def __init__(self, ptr: int, shape, typestr: str, stream=None, strides=None, owner=None):
        self.__cuda_array_interface__ = {"data": (ptr, False), "shape": tuple(shape), "typestr": typestr,
                                         "strides": strides, "version": 3, "stream": stream}
        self._owner = owner


def cpu_texture(*frames) -> np.ndarray:
    b = arrcoc_rt.TextureBuilder(W, H, device="cpu", dtype="float32")
    for f in frames:
        tex = b.build(f)
    return np.concatenate([np.asarray(tex.level(k)).ravel() for k in range(5)])


def device_texture(tex) -> np.ndarray:
    return np.concatenate([host(tex.level(k)).ravel() for k in range(5)])


def test_info_says_emulated():
    info = arrcoc_rt.info()
    assert info["cuda_emulated"] == EMULATED
    if EMULATED:
        assert all("emulated" in name for name in info["cuda_devices"])
        out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "info"], capture_output=True, text=True)
        assert out.returncode == 0 and "emulated" in out.stdout.lower(), out.stdout + out.stderr


def test_pipeline_on_the_second_device_runs_every_stage_there():
    """#1: Pipeline(device='cuda:1') gave the cascade and the encoder plain 'cuda' (device 0)."""
    two_devices()
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda:1", encoder="builtin")
    ref = arrcoc_rt.Pipeline(W, H, device="cpu", encoder="builtin")
    assert pipe.cascade.cuda_device == 1 and pipe.encoder.cuda_device == 1
    for i in range(3):
        assert_same_tokens(pipe.process(frame(i)), ref.process(frame(i)))


def test_memory_of_another_device_is_refused_naming_both():
    """#2: frames, textures and features on another device went straight to the kernels."""
    two_devices()
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda:0")
    on1 = arrcoc_rt.cuda.to_device(frame(), device=1)
    with pytest.raises(ValueError, match=r"frame: it is on cuda:1 but this builder runs on cuda:0"):
        pipe.process(on1)
    # A producer with only the CUDA array interface: its device comes from the pointer itself.
    cai = CudaArrayInterfaceOnly(on1.data_ptr, (H, W, 3), "|u1", owner=on1)
    with pytest.raises(ValueError, match=r"cuda:1 but this builder runs on cuda:0"):
        pipe.process(cai)
    b1 = arrcoc_rt.TextureBuilder(W, H, device="cuda:1")
    tex = b1.build(frame())
    with pytest.raises(ValueError, match=r"texture: it is on 'cuda:1' but this cascade runs on 'cuda:0'"):
        pipe.cascade.run(tex)
    r = pipe.process(frame())
    n = len(r.kinds)
    feats1 = arrcoc_rt.cuda.to_device(np.ones((4, 5, 6), np.float32), device=1)
    out0 = arrcoc_rt.cuda.to_device(np.zeros((n, 4), np.float32), device=0)
    with pytest.raises(ValueError, match=r"features: it is on cuda:1 but this pipeline runs on cuda:0"):
        r.gather_features(feats1, out0)


def test_an_upload_to_another_device_is_complete_for_its_streams():
    """to_device waited for the current device's default stream, not the memory's own."""
    two_devices()
    assert arrcoc_rt.cuda.current_device() == 0
    on1 = arrcoc_rt.cuda.to_device(frame(2), device=1)
    b = arrcoc_rt.TextureBuilder(W, H, device="cuda:1", dtype="float32")
    with arrcoc_rt.cuda.Stream(1) as s:
        tex = b.build(on1, stream=s)
        s.synchronize()
        np.testing.assert_allclose(device_texture(tex), cpu_texture(frame(2)), atol=1e-4)


def test_weights_can_change_after_the_stream_is_gone():
    """set_weights queued its copy on the last frame's stream, which the caller may have destroyed."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda:0")
    with arrcoc_rt.cuda.Stream(0) as s:
        pipe.process(frame(0), stream=s)
    w = arrcoc_rt.default_weights()
    w["mix"] = np.asarray([0.0, 1.0, 0.0], np.float32)
    pipe.set_weights(w)
    ref = arrcoc_rt.Pipeline(W, H, device="cpu")
    ref.process(frame(0))
    ref.set_weights(w)
    assert_same_tokens(pipe.process(frame(1)), ref.process(frame(1)))


def test_a_gather_still_queued_keeps_its_tokens():
    """The next frame, on another stream, rewrote the token positions before a queued gather read them."""
    pipe, ref = arrcoc_rt.Pipeline(W, H, device="cuda:0"), arrcoc_rt.Pipeline(W, H, device="cpu")
    feats = np.random.default_rng(4).random((5, 9, 12), dtype=np.float32)
    with arrcoc_rt.cuda.Stream(0) as a, arrcoc_rt.cuda.Stream(0) as b:
        r1, c1 = pipe.process(frame(0), stream=a), ref.process(frame(0))
        out = arrcoc_rt.cuda.to_device(np.zeros((len(r1.kinds), 5), np.float32), device=0)
        r1.gather_features(arrcoc_rt.cuda.to_device(feats, device=0), out, stream=a)
        pipe.process(frame(3), stream=b)  # moves the saccades
        a.synchronize()
        np.testing.assert_allclose(out.numpy(), c1.gather_features(feats), atol=1e-6)


def test_the_callers_current_device_is_kept():
    """#3: cudaSetDevice was never restored; gather_features and poison_output never set it."""
    two_devices()
    arrcoc_rt.cuda.set_device(1)
    try:
        pipe = arrcoc_rt.Pipeline(W, H, device="cuda:0")
        r0 = pipe.process(frame())
        assert arrcoc_rt.cuda.current_device() == 1
    finally:
        arrcoc_rt.cuda.set_device(0)
    # A pipeline on device 1 driven from a thread whose current device is 0.
    pipe1, ref = arrcoc_rt.Pipeline(W, H, device="cuda:1"), arrcoc_rt.Pipeline(W, H, device="cpu")
    r1, rc = pipe1.process(frame()), ref.process(frame())
    assert_same_tokens(r1, rc)
    feats = np.random.default_rng(3).random((8, 9, 12), dtype=np.float32)
    out = arrcoc_rt.cuda.to_device(np.zeros((len(r1.kinds), 8), np.float32), device=1)
    r1.gather_features(arrcoc_rt.cuda.to_device(feats, device=1), out)
    np.testing.assert_allclose(out.numpy(), rc.gather_features(feats), atol=1e-6)
    pipe1.texture_builder._native.poison_output()
    assert arrcoc_rt.cuda.current_device() == 0
    assert_same_tokens(r0, arrcoc_rt.Pipeline(W, H, device="cpu").process(frame()))


def test_a_device_frame_stays_alive_until_its_kernels_have_run():
    """#7: the producer was released when build() returned; a caching allocator (here: a pool
    that hands the memory out again as soon as the producer is freed) could then overwrite it
    before the queued kernels read it."""
    pool = arrcoc_rt.cuda.to_device(frame(0), device=0)
    next_user = frame(5)  # what the pool's next user writes into the same memory

    class PoolTensor:  # a tensor borrowed from the pool, exported through DLPack like torch's
        def __dlpack__(self, stream=None):
            return pool.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return pool.__dlpack_device__()

    t = PoolTensor()
    weakref.finalize(t, _native.cuda_upload, pool.data_ptr, next_user, 0)  # freed -> reused at once
    b = arrcoc_rt.TextureBuilder(W, H, device="cuda:0", dtype="float32")
    with arrcoc_rt.cuda.Stream(0) as s:
        tex = b.build(t, stream=s)  # queued, not run
        del t
        gc.collect()
        s.synchronize()
        np.testing.assert_allclose(device_texture(tex), cpu_texture(frame(0)), atol=1e-4)


def test_a_tensor_that_refuses_export_is_a_type_error():
    """#7: torch's RuntimeError for tensors that require grad came through as RuntimeError."""
    class RequiresGrad:  # what torch does for a CUDA tensor with requires_grad=True
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, stream=None):
            raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")

        @property
        def __cuda_array_interface__(self):
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad.")

    pipe = arrcoc_rt.Pipeline(W, H, device="cuda:0")
    with pytest.raises(TypeError, match="detach"):
        pipe.process(RequiresGrad())

    class CaiRequiresGrad:
        @property
        def __cuda_array_interface__(self):
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad.")

    with pytest.raises(TypeError, match="detach"):
        pipe.process(CaiRequiresGrad())


def test_the_producers_stream_is_honoured():
    """#7: the CUDA array interface's 'stream' (work that must finish before we read) was ignored."""
    b = arrcoc_rt.TextureBuilder(W, H, device="cuda:0", dtype="float32")
    cpu = arrcoc_rt.TextureBuilder(W, H, device="cpu", dtype="float32")
    with arrcoc_rt.cuda.Stream(0) as producer:
        tex = b.build(frame(1), stream=producer)  # queued on the producer's stream
        lum = tex.channel(arrcoc_rt.Channel.LUMINANCE)
        feats = CudaArrayInterfaceOnly(lum.data_ptr, (1, H, W), "<f4", stream=producer.cuda_stream, owner=tex)
        pipe = arrcoc_rt.Pipeline(W, H, device="cuda:0")
        r = pipe.process(frame(2))
        out = arrcoc_rt.cuda.to_device(np.zeros((len(r.kinds), 1), np.float32), device=0)
        r.gather_features(feats, out)
        want = arrcoc_rt.Pipeline(W, H, device="cpu").process(frame(2))
        lum_cpu = cpu.build(frame(1)).channel(arrcoc_rt.Channel.LUMINANCE)[None].astype(np.float32)
        np.testing.assert_allclose(out.numpy(), want.gather_features(np.ascontiguousarray(lum_cpu)), atol=1e-6)


def test_gather_checks_strides_and_uses_the_stream():
    """#8: _gather did not check the strides of features/out and always used stream 0."""
    pipe, ref = arrcoc_rt.Pipeline(W, H, device="cuda:0"), arrcoc_rt.Pipeline(W, H, device="cpu")
    r, rc = pipe.process(frame()), ref.process(frame())
    feats = np.random.default_rng(1).random((6, 10, 14), dtype=np.float32)
    dev = arrcoc_rt.cuda.to_device(feats, device=0)
    n = len(r.kinds)
    transposed = CudaArrayInterfaceOnly(dev.data_ptr, (6, 14, 10), "<f4", strides=(4 * 140, 4, 4 * 14), owner=dev)
    out = arrcoc_rt.cuda.to_device(np.zeros((n, 6), np.float32), device=0)
    with pytest.raises(ValueError, match="not C-contiguous"):
        r.gather_features(transposed, out)
    with arrcoc_rt.cuda.Stream(0) as s:
        r.gather_features(dev, out, stream=s)
        if EMULATED:  # streams run lazily there: work queued on `s` has not run before s is synchronized
            assert not out.numpy().any(), "the gather ran on another stream than the one given"
        s.synchronize()
        np.testing.assert_allclose(out.numpy(), rc.gather_features(feats), atol=1e-6)
        # Features still being computed on `s` (a texture level): the gather must queue behind them.
        b = arrcoc_rt.TextureBuilder(W, H, device="cuda:0", dtype="float32")
        level = b.build(frame(3), stream=s).level(2)
        cpu_level = np.ascontiguousarray(arrcoc_rt.TextureBuilder(W, H, device="cpu", dtype="float32").build(frame(3)).level(2))
        out = arrcoc_rt.cuda.to_device(np.zeros((n, cpu_level.shape[0]), np.float32), device=0)
        r.gather_features(level, out, stream=s)
        s.synchronize()
        np.testing.assert_allclose(out.numpy(), rc.gather_features(cpu_level), atol=1e-5)


def test_a_pinned_frame_can_be_reused_when_build_returns():
    """#9: the asynchronous upload of a page-locked frame could outlive the caller's buffer."""
    buf = arrcoc_rt.cuda.pinned_empty((H, W, 3))
    buf[...] = frame(0)
    b = arrcoc_rt.TextureBuilder(W, H, device="cuda:0", dtype="float32")
    with arrcoc_rt.cuda.Stream(0) as s:
        tex = b.build(buf, stream=s)
        buf[...] = frame(4)  # the camera's next frame lands in the same buffer
        s.synchronize()
        np.testing.assert_allclose(device_texture(tex), cpu_texture(frame(0)), atol=1e-4)


@pytest.mark.parametrize("order", ["alternating streams", "one stream"])
def test_frames_on_several_streams_equal_the_cpu(order):
    """#6: buffers reused from the previous frame raced when a caller alternated streams."""
    with arrcoc_rt.cuda.Stream(0) as a, arrcoc_rt.cuda.Stream(0) as b:
        pipe, ref = arrcoc_rt.Pipeline(W, H, device="cuda:0"), arrcoc_rt.Pipeline(W, H, device="cpu")
        for i in range(4):
            s = (a, b)[i % 2] if order == "alternating streams" else a
            r = pipe.process(frame(i), stream=s, copy=False)
            want = ref.process(frame(i))
            s.synchronize()
            assert_same_tokens(r, want)


@pytest.mark.parametrize("num_seeds", [1, 48])
def test_candidates_of_small_and_very_large_clusters_equal_the_cpu(num_seeds):
    """The CUDA candidates kernel ranks a cluster's members from a shared-memory list (a cluster of
    more than 2048 patches falls back to scanning every patch): both equal the CPU's selection."""
    w, h = 1280, 720  # 3600 patches: with one seed, one cluster holds them all
    img = np.ascontiguousarray(np.tile(real_image("coffee"), (2, 3, 1))[:h, :w])
    out = {}
    for device in ("cpu", "cuda:0"):
        b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype="float32")
        c = arrcoc_rt.ClusterCascade(w, h, device=device, num_seeds=num_seeds, top_clusters=1 if num_seeds == 1 else 10,
                                     patches_per_cluster=1024 if num_seeds == 1 else 50)
        out[device] = c.run(b.build(img))
    np.testing.assert_array_equal(out["cuda:0"].candidates, out["cpu"].candidates)
    assert np.count_nonzero(out["cpu"].candidates >= 0) > 0
