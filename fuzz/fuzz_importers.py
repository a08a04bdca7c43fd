"""Fuzz target: the DLPack and __cuda_array_interface__ importers (arrcoc_rt.frames.describe_array
and everything behind it: TextureBuilder.build, Pipeline.process, FrameResult.gather_features).

Objects with a fuzzed ``__dlpack__`` / ``__dlpack_device__`` (capsules built here with ctypes:
legacy and versioned, any version, ndim, shape, strides or none, dtype code/bits/lanes, device
type and id, byte offset, consumed or misnamed capsules, producers that raise) and a fuzzed
``__cuda_array_interface__`` (any typestr, shape, strides, data, stream, version; missing keys;
not a dict). Honest about memory: the bytes a tensor describes exist where it says (host memory
for CPU tensors; on a build with CUDA or the emulated device, device memory of the device named or,
when the device id is fuzzed, of another one). Streams are None, the defaults 1/2, 0 or a real one."""

from __future__ import annotations

import ctypes

import numpy as np

from _common import check_result, main, small_dim

import arrcoc_rt
from arrcoc_rt import _native

c_int64_p = ctypes.POINTER(ctypes.c_int64)


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", c_int64_p), ("strides", c_int64_p), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
                ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
# Names a capsule of the wrong kind may carry: consumed ones and foreign ones (a capsule named
# "dltensor" holds a DLManagedTensor and "dltensor_versioned" a versioned one, by definition).
OTHER_NAMES = [b"used_dltensor", b"used_dltensor_versioned", b"other"]
DL_DEVICES = [1, 1, 2, 2, 3, 13, 4, 0, -1, 2**31 - 1]
DL_DTYPES = [(1, 8, 1)] * 6 + [(0, 8, 1), (1, 16, 1), (2, 32, 1), (1, 8, 4), (1, 8, 0), (6, 8, 1), (2, 16, 1), (5, 8, 1)]
CUDA = arrcoc_rt.cuda_available()
NDEV = _native.cuda_device_count() if CUDA else 0
STREAMS = {}
BUILDERS = {}


def stream(fdp, device: int):
    """None, 0, 1 (legacy), 2 (per thread) or a real stream of ``device``."""
    r = fdp.ConsumeIntInRange(0, 4)
    if r < 4 or not CUDA:
        return [None, 0, 1, 2][r] if r < 4 else None
    if device not in STREAMS:
        STREAMS[device] = arrcoc_rt.cuda.Stream(device)
    return STREAMS[device].cuda_stream


class Memory:
    """``nbytes`` that exist: host (NumPy or page-locked) or device memory of ``device``."""

    def __init__(self, kind: str, nbytes: int, device: int, fill: bytes):
        host = np.resize(np.frombuffer(fill or b"\x7f", np.uint8), max(nbytes, 1))
        if kind == "device":
            self.owner = arrcoc_rt.cuda.to_device(host, device=device)
            self.ptr = int(self.owner.data_ptr)
        elif kind == "pinned":
            self.owner = arrcoc_rt.cuda.pinned_empty(host.size)
            self.owner[:] = host
            self.ptr = int(self.owner.__array_interface__["data"][0])
        else:
            self.owner = host
            self.ptr = int(host.__array_interface__["data"][0])


def geometry(fdp, mw: int, mh: int):
    """Shape and element strides (or None) of a tensor, mostly one a frame could have."""
    h, w = small_dim(fdp, mh + 1), small_dim(fdp, mw + 1)
    shape = fdp.PickValueInList([[h, w, 3], [h, w, 3], [h, w, 4], [h, w], [3, h, w], [h, w, 3, 1], [h], []])
    if fdp.ConsumeIntInRange(0, 9) == 0:
        shape = [fdp.PickValueInList([-1, 0, 2**31, 2**40, -(2**63)]) if fdp.ConsumeBool() else s for s in shape]
    r = fdp.ConsumeIntInRange(0, 4)
    if r == 0:
        return shape, None
    strides, acc = [], 1
    for n in reversed(shape):
        strides.insert(0, acc)
        acc *= max(n, 1)
    if r == 2 and shape:
        strides[0] += fdp.ConsumeIntInRange(0, 16)  # padded rows
    elif r == 3:
        strides = [fdp.PickValueInList([s, 0, -s, fdp.ConsumeIntInRange(-64, 64)]) for s in strides]
    return shape, strides


def extent(shape, strides, itemsize: int):
    """(lowest, highest + 1) byte offsets the tensor addresses, or None if it has no element."""
    if any(n <= 0 for n in shape):
        return None
    if strides is None:
        strides, acc = [], 1
        for n in reversed(shape):
            strides.insert(0, acc)
            acc *= n
    lo = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides)) * itemsize
    hi = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) * itemsize + itemsize
    return lo, hi


def memory_for(fdp, kind: str, shape, strides, itemsize: int, device: int):
    """(Memory, pointer to element 0) holding every byte the tensor addresses; None if too large."""
    ext = extent(shape, strides, max(itemsize, 1)) or (0, 0)
    lo, hi = ext
    if hi - lo > (1 << 20):
        return None, None
    mem = Memory(kind, hi - lo, device, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)))
    return mem, mem.ptr - lo


def dlpack_object(fdp, mw, mh, keep):
    dev_type = fdp.PickValueInList(DL_DEVICES)
    dev_id = fdp.ConsumeIntInRange(0, max(NDEV - 1, 0)) if fdp.ConsumeIntInRange(0, 5) else fdp.ConsumeIntInRange(-1, 3)
    code, bits, lanes = fdp.PickValueInList(DL_DTYPES)
    shape, strides = geometry(fdp, mw, mh)
    itemsize = max(bits * max(lanes, 1) // 8, 1)
    if dev_type in (2, 13) and CUDA:
        kind, home = "device", dev_id if 0 <= dev_id < NDEV else 0
        if fdp.ConsumeIntInRange(0, 7) == 0 and NDEV > 1:
            home = (home + 1) % NDEV  # the memory is another device's than the tensor says
    else:
        kind, home = ("pinned" if dev_type == 3 and CUDA else "host"), 0
    if dev_type in (2, 13) and not CUDA:
        mem, ptr = None, 0  # no such memory here: the importer must refuse before any read
    else:
        mem, ptr = memory_for(fdp, kind, shape, strides, itemsize, home)
        if mem is None:
            return None
    split = fdp.ConsumeIntInRange(0, 64) if ptr else 0  # data + byte_offset = the first element
    nd = len(shape)
    shape_arr = (ctypes.c_int64 * max(nd, 1))(*shape)
    strides_arr = (ctypes.c_int64 * max(nd, 1))(*strides) if strides is not None else None
    t = DLTensor(ptr - split if ptr else None, DLDevice(dev_type, dev_id), nd, DLDataType(code, bits, lanes),
                 ctypes.cast(shape_arr, c_int64_p), ctypes.cast(strides_arr, c_int64_p) if strides_arr else None,
                 split)
    name = fdp.PickValueInList(OTHER_NAMES) if fdp.ConsumeIntInRange(0, 7) == 0 else None
    if fdp.ConsumeBool():
        m = DLManagedTensorVersioned(DLPackVersion(1 if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 3), 0),
                                     None, None, fdp.ConsumeIntInRange(0, 3), t)
        name = name or b"dltensor_versioned"
    else:
        m = DLManagedTensor(t, None, None)
        name = name or b"dltensor"
    keep += [mem, shape_arr, strides_arr, m]
    capsule = _capsule_new(ctypes.addressof(m), name, None)
    claimed = (dev_type, dev_id) if fdp.ConsumeIntInRange(0, 9) else (fdp.PickValueInList(DL_DEVICES), dev_id)
    raises = fdp.PickValueInList([None] * 12 + [BufferError, RuntimeError, TypeError])
    returns = capsule if fdp.ConsumeIntInRange(0, 15) else fdp.PickValueInList([None, 3, "capsule", b"x"])

    class Producer:
        memory = mem  # a producer's capsule keeps its memory alive

        def __dlpack_device__(self):
            return claimed

        def __dlpack__(self, stream=None, max_version=None, **kw):
            if raises is not None:
                raise raises("refused")
            return returns

    return Producer()


TYPESTRS = ["|u1", "|u1", "|u1", "<u1", ">u1", "<f4", "|i1", "<u2", "u1", "", 7, None]


def cai_object(fdp, mw, mh, keep):
    shape, strides = geometry(fdp, mw, mh)
    dev = fdp.ConsumeIntInRange(0, max(NDEV - 1, 0))
    kind = "device" if CUDA and fdp.ConsumeIntInRange(0, 5) else fdp.PickValueInList(["host", "pinned"] if CUDA else ["host"])
    mem, ptr = memory_for(fdp, kind, shape, strides, 1, dev)
    if mem is None:
        return None
    keep.append(mem)
    cai = {"shape": tuple(shape), "typestr": fdp.PickValueInList(TYPESTRS), "data": (ptr, False), "version": 3,
           "strides": None if strides is None else tuple(strides)}  # strides in bytes (uint8)
    if fdp.ConsumeBool():
        cai["stream"] = stream(fdp, dev)
    for _ in range(fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeIntInRange(0, 4) == 0 else 0):
        key = fdp.PickValueInList(sorted(cai))
        r = fdp.ConsumeIntInRange(0, 3)
        if r == 0:
            del cai[key]
        elif r == 1:
            cai[key] = fdp.PickValueInList([None, "x", 3, (), (1,), [2, 3], {"a": 1}, 1.5, (None, False)])
        elif r == 2 and key in ("shape", "strides") and cai[key]:
            cai[key] = cai[key][:-1]  # one entry short
        else:
            cai["data"] = fdp.PickValueInList([(0, False), (ptr,), ptr, ("a", False)])
    value = cai if fdp.ConsumeIntInRange(0, 15) else fdp.PickValueInList([None, [1], "cai", 3])

    class Interface:
        memory = mem

        @property
        def __cuda_array_interface__(self):
            return value

    return Interface()


def builder(device: str):
    if device not in BUILDERS:
        BUILDERS[device] = arrcoc_rt.Pipeline(40, 32, device=device, gestalt_x=2, gestalt_y=2, saccades=6,
                                              num_threads=1)
    return BUILDERS[device]


def one_input(fdp):
    keep = []
    mw, mh = 40, 32
    obj = dlpack_object(fdp, mw, mh, keep) if fdp.ConsumeBool() else cai_object(fdp, mw, mh, keep)
    if obj is None:
        return
    devices = ["cpu"] + [f"cuda:{i}" for i in range(NDEV)]
    pipe = builder(fdp.PickValueInList(devices))
    fmt = fdp.PickValueInList([None, None, None, "bgr24", "gray8", "rgba32", "rgbp", "nv12"])
    what = fdp.ConsumeIntInRange(0, 3)
    try:
        if what == 0:
            r = pipe.process(obj, pixel_format=fmt, stream=stream(fdp, pipe.cuda_device))
            check_result(r, pipe)
        elif what == 1:
            pipe.texture_builder.build(obj, pixel_format=fmt, stream=stream(fdp, pipe.cuda_device))
        elif what == 2 and fmt == "nv12":  # a plane of a planar frame
            pipe.texture_builder.build((obj, obj), pixel_format="nv12")
        else:  # running back: CUDA features and output through the same importers
            r = pipe.process(np.full((mh, mw, 3), 100, np.uint8))
            feats = obj
            out = np.zeros((len(r.kinds), 3), np.float32) if pipe.device == "cpu" else obj
            res = r.gather_features(feats, out)
            if pipe.device == "cpu":
                assert np.all(np.isfinite(res))
    finally:
        pipe.texture_builder.synchronize()  # the kernels are done with the memory before it goes


if __name__ == "__main__":
    main(one_input)
