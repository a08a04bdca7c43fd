"""Inputs the fuzzers (fuzz/, docs/RELIABILITY.md) found that broke the contract — anything other
than a clear TypeError/ValueError, a crash, or a non-finite texture — each kept as a regression
test. The fuzzers' own reproducers are the files named in each test's docstring when there was one."""

from __future__ import annotations

import json

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import weights as W


# ---------------------------------------------------------------- weights files


@pytest.mark.parametrize("name,content", [
    ("empty.npz", b""),                                   # np.load: EOFError
    ("garbage.npz", b"PK\x03\x04 not really a zip"),       # zipfile.BadZipFile
    ("pickle.npz", b"\x80\x04\x95 pickled"),               # np.load: pickled data refused
    ("text.npz", b"W1 = 1"),
])
def test_weights_file_that_is_not_an_npz_is_a_value_error(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ValueError, match="is not an .npz file"):
        W.load_weights(p)


def test_weights_npy_named_npz_and_damaged_members(tmp_path):
    p = tmp_path / "one.npz"
    with open(p, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        W.load_weights(p)
    good = tmp_path / "good.npz"
    np.savez(good, **W.default_weights())
    data = bytearray(good.read_bytes())
    data[200:260] = b"\xff" * 60  # inside the first member's data: CRC/zip errors on read
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        W.load_weights(bad)


@pytest.mark.parametrize("text,pattern", [
    ("[" * 100000 + "]" * 100000, "not valid JSON"),               # RecursionError in json
    (json.dumps({"W1": 10**400}), "not an array of numbers"),      # OverflowError in NumPy
    (json.dumps({"W1": [[1, 2], [3]]}), "not an array of numbers"),  # ragged
    ("\xff\xfe", "not valid JSON"),
    (json.dumps([1, 2, 3]), None),                                 # not a dict: TypeError
    (json.dumps({"mix": ["1", "2", "3"]}), "strings are not weights"),   # NumPy read strings as numbers
    (json.dumps({"mix": [True, False, True]}), "holds 'true'; expected numbers only"),  # and booleans
    (json.dumps({"mix": [0.4, True, 0.3]}), "holds 'true'; expected numbers only"),  # NumPy: [0.4, 1.0, 0.3]
    (json.dumps({"mix": [0.4, None, 0.3]}), "holds 'null'; expected numbers only"),
    (json.dumps({"W1": "true [1, 2]"}), "strings are not weights"),  # a literal inside a string is a string
])
def test_weights_json_that_is_not_weights(tmp_path, text, pattern):
    p = tmp_path / "w.json"
    p.write_text(text, encoding="latin-1")
    with pytest.raises((ValueError, TypeError), match=pattern):
        W.load_weights(p)


def test_finite_weights_that_overflow_the_balancer_are_refused():
    """fuzz_weights (2026-11-30): a W1 entry of 3.4e38 - finite, so accepted - overflowed the first
    layer's float32 sums: NaN saccade scores. Every parameter must now satisfy |w| <= 1e6; the bound
    itself keeps every output finite, whatever the signs."""
    w = arrcoc_rt.default_weights()
    w["W1"] = w["W1"].copy()
    w["W1"][0, 1] = 3.4e38
    with pytest.raises(ValueError, match=r"W1 has values up to 3.4e\+38; expected \|w\| <= 1e\+06"):
        arrcoc_rt.Pipeline(64, 48, device="cpu", weights=w)
    pipe = arrcoc_rt.Pipeline(64, 48, device="cpu")
    with pytest.raises(ValueError, match=r"expected \|w\| <= 1e6"):
        pipe._allocator.set_weights(w)  # the C++ core refuses it on its own too
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for sign in (1.0, -1.0):
        w = {k: np.full_like(v, sign * 1e6) for k, v in arrcoc_rt.default_weights().items()}
        pipe.set_weights(w)
        for _ in range(2):
            r = pipe.process(frame)
            assert all(np.all(np.isfinite(np.asarray(x))) for x in (r.scores, r.balanced_score, r.relevance,
                                                                    r.context_weights))


# ---------------------------------------------------------------- the CUDA array interface / DLPack


def _cai(**d):
    class Interface:
        __cuda_array_interface__ = d

    return Interface()


FRAME_CAI = dict(shape=(8, 8, 3), typestr="|u1", data=(0xDEAD0000, False), version=3)


@pytest.mark.parametrize("cai,exc,pattern", [
    ({k: v for k, v in FRAME_CAI.items() if k != "typestr"}, ValueError, "lacks typestr"),     # was KeyError
    ({k: v for k, v in FRAME_CAI.items() if k != "data"}, ValueError, "lacks data"),
    (dict(FRAME_CAI, strides=(24, 3)), ValueError, "do not match shape"),                     # was IndexError
    (dict(FRAME_CAI, data=()), TypeError, "must be a pair"),                                  # was IndexError
    (dict(FRAME_CAI, data=("a", False)), TypeError, "pointer must be an int"),
    (dict(FRAME_CAI, shape=8), TypeError, "shape must be a tuple of ints"),
    (dict(FRAME_CAI, shape=(8.5, 8, 3)), TypeError, "shape must be a tuple of ints"),
    (dict(FRAME_CAI, stream=0), ValueError, "stream 0 is not a stream"),
    (dict(FRAME_CAI, stream="s"), TypeError, "stream must be None or an int"),
])
def test_malformed_cuda_array_interface(cai, exc, pattern):
    b = arrcoc_rt.TextureBuilder(8, 8, device="cpu")
    with pytest.raises(exc, match=pattern):
        b.build(_cai(**cai))


def test_cuda_array_interface_that_is_not_a_dict():
    class Interface:
        __cuda_array_interface__ = [1, 2]

    with pytest.raises(TypeError, match="must be a dict"):
        arrcoc_rt.TextureBuilder(8, 8, device="cpu").build(Interface())


@pytest.mark.skipif(arrcoc_rt.cuda_available(), reason="checks a machine where CUDA is built or not, but unusable")
def test_cuda_array_interface_with_a_stream_and_no_usable_device_is_a_value_error():
    """Was RuntimeError (cudaErrorInsufficientDriver): the producer's stream was synchronized before
    anyone asked whether CUDA could be used here."""
    with pytest.raises(ValueError, match="in CUDA memory but this builder runs on the CPU"):
        arrcoc_rt.TextureBuilder(8, 8, device="cpu").build(_cai(**FRAME_CAI, stream=7))


@pytest.mark.needs_emulator
def test_cuda_array_interface_with_a_handle_that_is_no_stream_is_a_value_error():
    """fuzz/fuzz_importers.py (CI's fixed-seed run, 2026-11-30): device memory described with
    stream=3, a handle that is no stream, made cudaStreamSynchronize fail: RuntimeError
    (cudaErrorInvalidResourceHandle). The emulated device only: a real driver may not detect every
    handle that is no stream."""
    from arrcoc_rt import cuda

    frame = cuda.to_device(np.full((8, 8, 3), 7, np.uint8), device=1)
    cai = dict(frame.__cuda_array_interface__, stream=3)
    b = arrcoc_rt.TextureBuilder(8, 8, device="cuda:1")
    with pytest.raises(ValueError, match="stream 3 is not a stream of cuda:1"):
        b.build(_cai(**cai))
    producer = cuda.Stream(1)
    b.build(_cai(**dict(cai, stream=producer.cuda_stream)))  # a stream of that device: fine


def test_dlpack_producer_whose_device_disagrees_with_its_capsule():
    """A capsule of host memory from a producer whose __dlpack_device__ says CUDA (or the reverse)
    would have sent host pointers to the GPU path or device pointers to the CPU kernels."""
    a = np.zeros((8, 8, 3), np.uint8)

    class Liar:
        def __dlpack_device__(self):
            return (2, 0)  # CUDA

        def __dlpack__(self, stream=None, **kw):
            return a.__dlpack__()  # host memory

    class Short:
        def __dlpack_device__(self):
            return ()

        def __dlpack__(self, stream=None, **kw):
            return a.__dlpack__()

    b = arrcoc_rt.TextureBuilder(8, 8, device="cpu")
    with pytest.raises(ValueError, match="but its __dlpack_device__"):
        b.build(Liar())
    with pytest.raises(ValueError, match="expected \\(device_type, device_id\\)"):
        b.build(Short())


# ---------------------------------------------------------------- query maps


@pytest.mark.parametrize("value", [3.5e30, 1e5, -2e4])
def test_query_map_values_beyond_the_patch_value_limit_are_refused(value):
    """A finite float32 map of 3.5e30 became inf in the float16 texture (channel 33) and overflowed
    the cascade's fixed-point patch keys (float -> int64 conversion out of range)."""
    pipe = arrcoc_rt.Pipeline(46, 36, device="cpu", gestalt_x=2, gestalt_y=2, saccades=8)
    q = np.zeros((3, 3), np.float64)
    q[2] = value
    with pytest.raises(ValueError, match="out of range; expected at most 10000 in magnitude"):
        pipe.process(np.full((36, 46, 3), 90, np.uint8), query_map=q)
    q[2] = 1e4  # the limit itself is fine, and stays finite in float16
    r = pipe.process(np.full((36, 46, 3), 90, np.uint8), query_map=q)
    ch = np.asarray(r.texture.channel(33, 4), np.float32)
    assert np.all(np.isfinite(ch)) and ch.max() == 1e4


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("where,kwargs", [
    ("cascade", dict(num_seeds=float("inf"))),     # int(inf) raised OverflowError
    ("pipeline", dict(saccades=float("inf"))),
    ("pipeline", dict(gestalt_x=-float("inf"))),
])
def test_infinite_integer_options_are_type_errors(where, kwargs):
    with pytest.raises(TypeError, match="expected an int"):
        if where == "cascade":
            arrcoc_rt.ClusterCascade(32, 32, device="cpu", **kwargs)
        else:
            arrcoc_rt.Pipeline(32, 32, device="cpu", **kwargs)


# ---------------------------------------------------------------- PCA files


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", b"\x93NUMPY garbage"])
def test_pca_file_that_is_not_an_npz_is_a_value_error(tmp_path, content):
    """np.load's EOFError / BadZipFile used to escape PCA16.load."""
    from arrcoc_rt.encoders import PCA16

    p = tmp_path / "pca.npz"
    p.write_bytes(content)
    with pytest.raises(ValueError):
        PCA16.load(p)


def test_pca_file_without_its_arrays_or_with_nan_is_a_value_error(tmp_path):
    from arrcoc_rt.encoders import DIMS, PCA16

    p = tmp_path / "pca.npz"
    np.savez(p, mean=np.zeros(DIMS))
    with pytest.raises(ValueError, match="must hold mean"):  # was KeyError
        PCA16.load(p)
    comps = np.zeros((16, DIMS))
    comps[3, 4] = np.nan
    np.savez(p, mean=np.zeros(DIMS), components=comps)
    with pytest.raises(ValueError, match="NaN"):
        PCA16.load(p)


def test_pca_of_another_dimension_is_refused_before_the_kernels_read_it(tmp_path):
    """A PCA of 8-dim features on the 32-dim built-in encoder: the semantic kernel read mean[32]
    and components[16, 32] from arrays of 8 and 16 x 8 floats (heap-buffer-overflow under ASan,
    fuzz/fuzz_pca.py)."""
    p = tmp_path / "pca8.npz"
    np.savez(p, mean=np.zeros(8, np.float32), components=np.eye(16, 8, dtype=np.float32))
    with pytest.raises(ValueError, match="pca"):
        pipe = arrcoc_rt.Pipeline(32, 32, device="cpu", encoder="builtin", pca=p)
        pipe.process(np.zeros((32, 32, 3), np.uint8))


def test_npz_with_an_unknown_zip_version_is_a_value_error(tmp_path):
    """fuzz/fuzz_pca.py: zipfile raised NotImplementedError ("zip file version 21.0") from np.load."""
    import base64

    from arrcoc_rt.encoders import PCA16

    data = base64.b64decode(
        "UEsDBC0AAAAIAAAAIQAsGAt3//////////8IABRlbZ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkahmY6ChaaOgq1CuQCLgaGBnsGgmAkqxne"
        "AABQSwECLf3S////+AAIACEALBgLd0cAAACgAAAACAAAAAAAAAAAAAAAgAEAAAAAbWVhbi5ucHlQSwECLQMtAAAACAAAACEAtEhlAlMAAACAAgAA"
        "DgAAAAAAAAAAAAAAgAGBAAAAY29tcG9uZW50cy5ucHlQSwUGAAAAAAIAAgByAAAAFAEAAAAA")
    p = tmp_path / "v21.npz"
    p.write_bytes(data)
    for load in (W.load_weights, PCA16.load):
        with pytest.raises(ValueError, match="not an .npz file: NotImplementedError"):
            load(p)


# ---------------------------------------------------------------- query vectors


def test_query_vector_whose_norm_overflows_float32_means_its_direction():
    """fuzz/fuzz_queries.py: finite float32 values of 1e38 made |q|^2 overflow in the similarity
    kernel, and channel 33 (and the scores built on it) became NaN. Such vectors were refused; the
    kernel now rescales where a squared norm would overflow, so they mean their direction."""
    v = np.zeros(32, np.float32)
    v[0], v[5], v[9] = 1e38, -2e38, 3e37
    f = np.random.default_rng(5).integers(0, 256, (48, 64, 3), np.uint8)
    maps = []
    for q in (v, v / np.float32(1e30), v.astype(np.float64) * 1e-75):
        pipe = arrcoc_rt.Pipeline(64, 48, device="cpu", dtype="float32", encoder="builtin", gestalt_x=2,
                                  gestalt_y=1, saccades=4)
        maps.append(np.asarray(pipe.process(f, query_vector=q).texture.channel(33, 4), np.float32))
    assert np.all(np.isfinite(maps[0])) and np.ptp(maps[0]) > 0
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    np.testing.assert_allclose(maps[2], maps[1], atol=1e-5)
    pipe = arrcoc_rt.Pipeline(64, 48, device="cpu", encoder="builtin", gestalt_x=2, gestalt_y=1, saccades=4)
    with pytest.raises(ValueError, match="NaN or inf"):  # float64 beyond float32's range
        pipe.process(f, query_vector=v.astype(np.float64) * 1e10)


# ---------------------------------------------------------------- exemplar images


@pytest.mark.parametrize("shape", [(1 << 20, 1 << 20, 3), (16385, 8, 3), (8, 16385, 3), (0, 8, 3)])
def test_exemplar_of_a_size_no_frame_may_have_is_refused_before_it_is_copied(shape):
    """fuzz/fuzz_queries.py (reproducer Lc6zzhsBKzEtzs7/Kf8= in base64): a broadcast exemplar view of
    1048576 x 1048576 x 3 over one byte was made contiguous first, a 3 TiB allocation (MemoryError,
    or an abort under ASan). An exemplar's sides are now checked like a frame's, 1..16384."""
    pipe = arrcoc_rt.Pipeline(32, 16, device="cpu", encoder="builtin", gestalt_x=2, gestalt_y=1, saccades=4)
    exemplar = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, (0, 0, 0))
    with pytest.raises(ValueError, match=r"expected 1..16384 pixels a side"):
        pipe.process(np.full((16, 32, 3), 120, np.uint8), query_image=exemplar)
    ok = np.lib.stride_tricks.as_strided(np.full(1, 200, np.uint8), (16384, 4, 3), (0, 0, 0))
    r = pipe.process(np.full((16, 32, 3), 120, np.uint8), query_image=ok)  # the limit itself works
    assert np.all(np.isfinite(np.asarray(r.texture.channel(33, 4), np.float32)))


def test_exemplar_file_larger_than_a_frame_may_be_is_refused(tmp_path):
    from PIL import Image

    p = tmp_path / "wide.png"
    Image.new("RGB", (16385, 2), (10, 200, 30)).save(p)
    pipe = arrcoc_rt.Pipeline(32, 16, device="cpu", encoder="builtin", gestalt_x=2, gestalt_y=1, saccades=4)
    with pytest.raises(ValueError, match=r"is 16385 x 2; expected 1..16384 pixels a side"):
        pipe.process(np.full((16, 32, 3), 120, np.uint8), query_image=str(p))


@pytest.mark.parametrize("value,exc", [(np.uint8(64), None), (np.int64(128), None), (64.0, TypeError),
                                       (np.float32(64), TypeError), (True, TypeError), (np.uint8(65), ValueError)])
def test_gestalt_lod_of_numpy_or_float_type(value, exc):
    """fuzz/fuzz_options.py (a random-seed run, 2026-11-30): gestalt_lod=np.uint8(64) passed the
    `in LODS` check, then `gestalt * gestalt_lod` overflowed uint8 (OverflowError: Python integer 256
    out of bounds for uint8); gestalt_lod=64.0 reached pybind11 and raised RuntimeError."""
    if exc is None:
        pipe = arrcoc_rt.Pipeline(32, 32, device="cpu", gestalt_lod=value, gestalt_x=2, gestalt_y=2)
        assert type(pipe.config["gestalt_lod"]) is int and pipe.config["gestalt_lod"] == int(value)
        r = pipe.process(np.full((32, 32, 3), 100, np.uint8))
        assert set(np.asarray(r.budgets)[np.asarray(r.kinds) == 0].tolist()) == {int(value)}
    else:
        with pytest.raises(exc, match="gestalt_lod"):
            arrcoc_rt.Pipeline(32, 32, device="cpu", gestalt_lod=value, gestalt_x=2, gestalt_y=2)
    with pytest.raises(TypeError, match="patch: expected an int"):
        arrcoc_rt.Pipeline(32, 32, device="cpu", patch=16.0)
