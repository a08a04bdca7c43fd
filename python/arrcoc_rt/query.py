"""What the model will be asked about: one explicit kind of query.

    pipe.process(frame, query_image="mug.png")         # an exemplar picture (path or H x W x 3 uint8)
    pipe.process(frame, query_text="a red mug")        # text (a CLIP/SigLIP encoder)
    pipe.process(frame, query_vector=v)                # a feature vector in the encoder's space
    pipe.process(frame, query_map=m)                   # a similarity map over the frame or its patch grid
    pipe.process(frame, query=arrcoc_rt.Query.image("mug.png"))   # the same, as one object

Nothing is guessed from a file suffix: a string is text only through ``query_text``/``Query.text``
and a picture only through ``query_image``/``Query.image``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("text", "image", "vector", "map")


@dataclass(frozen=True, eq=False)
class Query:
    """One query: ``kind`` is 'text', 'image', 'vector' or 'map'; build it with the class methods."""

    kind: str
    value: object

    @classmethod
    def text(cls, text: str) -> "Query":
        if not isinstance(text, str) or not text.strip():
            raise TypeError(f"query_text: expected a non-empty str; got {type(text).__name__}")
        return cls("text", text)

    @classmethod
    def image(cls, image) -> "Query":
        """An exemplar of what to look for: a path to a picture, or an H x W x 3 uint8 array."""
        if isinstance(image, (str, Path)):
            return cls("image", Path(image))
        _check_on_host(image, "query_image")
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"query_image: expected a path or an H x W x 3 uint8 array; got {a.dtype} {a.shape}")
        return cls("image", image)

    @classmethod
    def vector(cls, vector) -> "Query":
        return cls("vector", _numeric(vector, 1, "query_vector: expected a 1-D numeric vector"))

    @classmethod
    def map(cls, similarity) -> "Query":
        """Similarity per pixel ([H, W]) or per 16-px patch ([ceil(H/16), ceil(W/16)])."""
        return cls("map", _numeric(similarity, 2, "query_map: expected a 2-D numeric map"))

    @property
    def needs_encoder(self) -> bool:
        return self.kind != "map"

    def __repr__(self) -> str:
        v = self.value
        shown = repr(v) if isinstance(v, (str, Path)) else f"array{tuple(np.shape(v))}"
        return f"Query.{self.kind}({shown})"


def _check_on_host(value, name: str) -> None:
    """TypeError for an array in device memory (NumPy would read it as an opaque object)."""
    if not isinstance(value, np.ndarray) and (hasattr(value, "__cuda_array_interface__") or (
            hasattr(value, "__dlpack_device__") and value.__dlpack_device__()[0] != 1)):  # 1: kDLCPU
        raise TypeError(f"{name}: a host array is needed (NumPy, or a CPU tensor); got {type(value).__name__} in "
                        "device memory: copy it to the host first (.numpy(), .cpu())")


def _numeric(value, ndim: int, expected: str):
    _check_on_host(value, expected.split(":")[0])
    a = np.asarray(value)
    if a.ndim != ndim or a.dtype.kind not in "fiu":
        raise ValueError(f"{expected}; got {a.dtype} {a.shape}")
    return value


def make_query(query=None, *, query_text=None, query_image=None, query_vector=None, query_map=None) -> Query | None:
    """The one Query given as ``query`` (a Query) or as one of the ``query_*`` keywords; None for none."""
    given = [q for q in (
        query if isinstance(query, Query) else None,
        None if query_text is None else Query.text(query_text),
        None if query_image is None else Query.image(query_image),
        None if query_vector is None else Query.vector(query_vector),
        None if query_map is None else Query.map(query_map)) if q is not None]
    if query is not None and not isinstance(query, Query):
        given.append(_legacy(query))
    if len(given) > 1:
        raise TypeError("query: give one query (query=, query_text=, query_image=, query_vector= or query_map=)")
    return given[0] if given else None


def _legacy(query) -> Query:
    """``query=<value>`` of earlier releases: arrays by their shape (deprecated); never a string."""
    if isinstance(query, (str, Path)):
        raise TypeError("query: a string is ambiguous; pass query_text='...' for text, or "
                        "query_image='picture.png' for an exemplar picture")
    a = np.asarray(query)
    kind = ("image" if a.ndim == 3 and a.dtype == np.uint8 else "vector" if a.ndim == 1 else
            "map" if a.ndim == 2 else None)
    if kind is None:
        raise ValueError(f"query: cannot tell what a {a.dtype} array of shape {a.shape} is; pass query_image=, "
                         "query_vector= or query_map=")
    warnings.warn(f"a query given as a bare array is deprecated; pass arrcoc_rt.Query.{kind}(...) (or query_{kind}= "
                  "where the call takes it)",
                  DeprecationWarning, stacklevel=4)
    return getattr(Query, kind)(query)
