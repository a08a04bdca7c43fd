"""Our DLPack producer and consumer (pybind11 has no caster; csrc/python/bindings.cpp)."""

import gc

import numpy as np
import pytest

from arrcoc_rt import _native


def test_producer_roundtrip_numpy_zero_copy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    exported = _native._export_host_memory_for_test(a)
    assert exported.__dlpack_device__() == (1, 0)
    b = np.from_dlpack(exported)
    np.testing.assert_array_equal(a, b)
    assert np.shares_memory(a, b)
    a[1, 2] = -7
    assert b[1, 2] == -7


def test_producer_keeps_the_owner_alive():
    exported = _native._export_host_memory_for_test(np.full((5, 5), 3.0, np.float32))
    b = np.from_dlpack(exported)
    del exported
    gc.collect()
    assert float(b.sum()) == 75.0


def test_producer_versioned_and_legacy_capsules():
    exported = _native._export_host_memory_for_test(np.ones((2, 3), np.float32))
    legacy = exported.__dlpack__()
    versioned = exported.__dlpack__(max_version=(1, 0))
    assert "dltensor" in repr(legacy) and "dltensor_versioned" in repr(versioned)
    for cap in (legacy, versioned):
        info = _native.dlpack_tensor_info(cap)
        assert info["shape"] == (2, 3) and info["strides"] == (3, 1) and info["dtype"] == (2, 32, 1)
    assert _native.dlpack_tensor_info(versioned)["readonly"]
    del legacy, versioned  # unconsumed capsules free their tensors in their destructors
    gc.collect()


def test_producer_into_torch():
    torch = pytest.importorskip("torch")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = torch.from_dlpack(_native._export_host_memory_for_test(a))
    assert t.shape == (2, 3) and t.dtype == torch.float32
    assert t.data_ptr() == a.__array_interface__["data"][0]


def test_consumer_reads_torch_capsules():
    torch = pytest.importorskip("torch")
    t = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)[:, 1:, :]
    info = _native.dlpack_tensor_info(t.__dlpack__())
    assert info["shape"] == (2, 2, 4) and info["dtype"] == (1, 8, 1) and info["device_type"] == 1
    assert info["strides"] == (12, 4, 1)
    assert info["data"] == t.data_ptr()


def test_consumer_rejects_non_capsules():
    with pytest.raises(TypeError):
        _native.dlpack_tensor_info("not a capsule")
