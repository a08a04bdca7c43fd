"""arrcoc_rt on Ray: many sources, many machines (the ``ray`` extra: ``pip install 'arrcoc_rt[ray]'``).

* ``run_many(sources, query=None, address=None, **options)``: live or file sources, one Stream
  each, held by Ray actors placed by resources; an iterator of ``FramePack``s tagged with source and
  frame index, with bounded in-flight work, restarts and exact resumption (``live.py``).
* ``run_batch(inputs, out_dir, address=None, **options)``: a corpus of video files to Parquet with
  Ray Data, one task per file, one row per frame; resumable (``batch.py``).
* ``FramePack``, ``packs_to_table``, ``table_to_packs``, ``read_parquet``: the compact token pack
  and its Arrow / Parquet form (``records.py``).

docs/SCALING.md says how to run on a local or a remote cluster and what is guaranteed on faults.
Nothing here schedules work across machines by itself: Ray does.
"""

from .records import FramePack, arrow_schema, packs_to_table, table_to_packs

__all__ = ["FramePack", "arrow_schema", "packs_to_table", "table_to_packs", "run_many", "RunMany", "SourceReport",
           "connect", "run_batch", "read_parquet", "StreamWorker"]


def __getattr__(name):  # Ray and pyarrow are imported on first use, not with arrcoc_rt
    if name in ("run_many", "RunMany", "SourceReport", "connect"):
        from . import live

        return getattr(live, name)
    if name in ("run_batch", "read_parquet"):
        from . import batch

        return getattr(batch, name)
    if name == "StreamWorker":
        from .worker import StreamWorker

        return StreamWorker
    raise AttributeError(f"module 'arrcoc_rt.distributed' has no attribute {name!r}")
