"""``FramePack``: one frame's token pack in compact form, what crosses the network and lands on disk.

A ``FrameResult`` holds glimpses ([N, 3, 16, 16] floats, about 1.6 MB per frame), maps and the
texture; a ``FramePack`` keeps what a consumer needs to feed a model or index an archive: the token
arrays (positions, levels, budgets, kinds, patches, scores), the scene-cut flag, the saccade count,
the frame size and time, and how long the frame took. About 15 kB per frame at the default 529
tokens. Glimpses are cut again from the frame by whoever holds the pixels (``positions`` and
``levels`` say where and how coarse).

``packs_to_table`` / ``table_to_packs`` convert to and from an Arrow table with one row per frame
(the Parquet layout of ``arrcoc-rt batch``); ``FramePack.to_json`` is the JSONL line of
``arrcoc-rt run --ray``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKEN_ARRAYS = ("positions", "levels", "budgets", "kinds", "patches", "scores")
_DTYPES = {"positions": np.float32, "levels": np.int32, "budgets": np.int32, "kinds": np.int32,
           "patches": np.int32, "scores": np.float32}


@dataclass
class FramePack:
    """One processed frame of one source, tagged with the source and the frame's index in it.

    ``frame_index`` counts the source's frames from 0 (after any ``start``/``fps``/``stride``
    sampling) and is the same across actor restarts: a frame is never delivered twice."""

    source: str                 # the source as given (path, URL, webcam)
    source_index: int           # its position in the list given to run_many / batch
    frame_index: int
    pts: float | None           # seconds, when the container knows
    width: int
    height: int
    scene_cut: bool
    num_saccades: int
    positions: np.ndarray       # [N, 2] float32 token centres (x, y), pixels
    levels: np.ndarray          # [N] int32 mip level (-1 padding)
    budgets: np.ndarray         # [N] int32 level of detail 64..400 (0 padding)
    kinds: np.ndarray           # [N] int32: 0 gestalt, 1 saccade, -1 padding
    patches: np.ndarray         # [N] int32 patch id (row * grid width + column)
    scores: np.ndarray          # [N] float32 selection key of saccades
    latency_ms: float = 0.0     # Stream.process wall time in the worker

    @classmethod
    def from_result(cls, result, *, source: str, source_index: int, frame_index: int,
                    latency_ms: float = 0.0) -> "FramePack":
        """Copies the token arrays of a ``FrameResult`` (host arrays; CUDA results are copied)."""
        from ..texture import to_host

        w, h = result.frame_size
        arrays = {k: np.ascontiguousarray(np.asarray(to_host(getattr(result, k))), dtype=_DTYPES[k])
                  for k in TOKEN_ARRAYS}
        return cls(source=str(source), source_index=int(source_index), frame_index=int(frame_index),
                   pts=None if result.pts is None else float(result.pts), width=int(w), height=int(h),
                   scene_cut=bool(result.scene_cut), num_saccades=int(result.num_saccades),
                   latency_ms=float(latency_ms), **arrays)

    def same_tokens(self, other) -> bool:
        """The same frame, cut flag and token arrays (bit for bit) as ``other`` (a FramePack or a
        FrameResult)."""
        return (bool(self.scene_cut) == bool(other.scene_cut) and int(self.num_saccades) == int(other.num_saccades)
                and all(np.array_equal(getattr(self, k), np.asarray(getattr(other, k))) for k in TOKEN_ARRAYS))

    def to_json(self) -> dict:
        """A JSON-ready dict: the frame's fields and its kept tokens (padding left out)."""
        keep = self.kinds >= 0
        return {
            "source": self.source, "frame": self.frame_index, "pts": self.pts, "size": [self.width, self.height],
            "scene_cut": self.scene_cut, "num_saccades": self.num_saccades,
            "latency_ms": round(self.latency_ms, 3),
            "tokens": [{"x": round(float(x), 2), "y": round(float(y), 2), "level": int(lv), "budget": int(b),
                        "kind": "saccade" if k == 1 else "gestalt", "patch": int(p), "score": round(float(s), 5)}
                       for (x, y), lv, b, k, p, s in zip(self.positions[keep], self.levels[keep], self.budgets[keep],
                                                         self.kinds[keep], self.patches[keep], self.scores[keep])],
        }


def arrow_schema():
    """The Arrow schema of one row per frame (Parquet files of ``arrcoc-rt batch`` and
    ``arrcoc-rt run --ray --format parquet``)."""
    import pyarrow as pa

    return pa.schema([
        ("source", pa.string()), ("frame_index", pa.int64()), ("pts", pa.float64()), ("width", pa.int32()),
        ("height", pa.int32()), ("scene_cut", pa.bool_()), ("num_saccades", pa.int32()),
        ("latency_ms", pa.float32()),
        ("positions", pa.list_(pa.list_(pa.float32(), 2))), ("levels", pa.list_(pa.int32())),
        ("budgets", pa.list_(pa.int32())), ("kinds", pa.list_(pa.int32())), ("patches", pa.list_(pa.int32())),
        ("scores", pa.list_(pa.float32())),
    ])


def _list_array(arrays, dtype, pa_type):
    import pyarrow as pa

    lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([np.asarray(a, dtype).reshape(-1) for a in arrays]) if arrays else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa_type))


def packs_to_table(packs):
    """FramePacks -> an Arrow table, one row per frame, the token arrays as list columns."""
    import pyarrow as pa

    packs = list(packs)
    schema = arrow_schema()
    pos = []
    for p in packs:
        pos.append(np.asarray(p.positions, np.float32).reshape(-1, 2))
    lengths = np.fromiter((len(a) for a in pos), np.int64, len(pos))
    offsets = np.zeros(len(pos) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(pos).reshape(-1) if pos else np.zeros(0, np.float32)
    positions = pa.ListArray.from_arrays(pa.array(offsets), pa.FixedSizeListArray.from_arrays(pa.array(flat), 2))
    columns = {
        "source": pa.array([p.source for p in packs], pa.string()),
        "frame_index": pa.array([p.frame_index for p in packs], pa.int64()),
        "pts": pa.array([p.pts for p in packs], pa.float64()),
        "width": pa.array([p.width for p in packs], pa.int32()),
        "height": pa.array([p.height for p in packs], pa.int32()),
        "scene_cut": pa.array([p.scene_cut for p in packs], pa.bool_()),
        "num_saccades": pa.array([p.num_saccades for p in packs], pa.int32()),
        "latency_ms": pa.array([p.latency_ms for p in packs], pa.float32()),
        "positions": positions,
    }
    for k in TOKEN_ARRAYS[1:]:
        columns[k] = _list_array([getattr(p, k) for p in packs], _DTYPES[k], schema.field(k).type.value_type)
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def table_to_packs(table, source_index: int = 0) -> list[FramePack]:
    """An Arrow table of ``arrow_schema()`` (e.g. ``pyarrow.parquet.read_table(path)``) -> FramePacks."""
    import pyarrow as pa

    def lists(name, dtype):
        col = table.column(name).combine_chunks()
        offsets = np.asarray(col.offsets)
        values = col.values
        if pa.types.is_fixed_size_list(values.type):  # positions: N (x, y) pairs per row
            offsets = offsets * values.type.list_size
            values = values.flatten()
        values = np.asarray(values.to_numpy(zero_copy_only=False), dtype)
        return [values[offsets[i]:offsets[i + 1]] for i in range(len(col))]

    cols = {k: table.column(k).to_pylist() for k in ("source", "frame_index", "pts", "width", "height", "scene_cut",
                                                     "num_saccades", "latency_ms")}
    arrays = {k: lists(k, _DTYPES[k]) for k in TOKEN_ARRAYS}
    arrays["positions"] = [a.reshape(-1, 2) for a in arrays["positions"]]
    return [FramePack(source=cols["source"][i], source_index=source_index, frame_index=cols["frame_index"][i],
                      pts=cols["pts"][i], width=cols["width"][i], height=cols["height"][i],
                      scene_cut=cols["scene_cut"][i], num_saccades=cols["num_saccades"][i],
                      latency_ms=cols["latency_ms"][i], **{k: arrays[k][i] for k in TOKEN_ARRAYS})
            for i in range(table.num_rows)]
