"""The interface between arrcoc_rt's token packs and a frozen vision-language model."""

from __future__ import annotations

import inspect
import json
import math
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


def host(a, what: str = "array") -> np.ndarray:
    """A FrameResult array (NumPy, torch CPU/CUDA tensor, or DLPack DeviceArray) as NumPy; TypeError
    naming ``what`` for anything else (a PIL image, None)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    if hasattr(a, "numpy"):  # DLPack DeviceArray
        return np.asarray(a.numpy())
    hint = " (np.asarray(image) converts a PIL image)" if type(a).__module__.startswith("PIL") else ""
    raise TypeError(f"{what}: expected a NumPy array, a torch tensor or a DeviceArray; got {type(a).__name__}{hint}")


def check_tokens(tokens) -> None:
    """A token count: None or 'all' (all kept tokens) or a positive int; ValueError otherwise."""
    if tokens is not None and tokens != "all" and (isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer))
                                                   or tokens < 1):
        raise ValueError(f"tokens: {tokens!r} is not a positive int (or None or 'all' for all kept tokens)")


def call_tokens(adapter_tokens, tokens):
    """The token count of one ``prepare`` call: its own ``tokens=`` (an int, or 'all' for every kept
    token, overriding the adapter's), else the adapter's (None when it keeps all)."""
    check_tokens(tokens)
    if tokens is None:
        return adapter_tokens
    return None if tokens == "all" else tokens


def check_template(template: str) -> None:
    """A prompt template holds exactly one '<image>' and a '{prompt}'; ValueError otherwise."""
    if template.count("<image>") != 1 or "{prompt}" not in template:
        raise ValueError(f"template: {template!r} needs exactly one '<image>' and a '{{prompt}}'")


def kept_tokens(result, tokens: int | None = None) -> np.ndarray:
    """Indices into the pack of the tokens a model sees, in pack order: gestalt tokens first, then
    saccades best-first; padding dropped. ``tokens=N`` keeps N of them: every gestalt token and the
    best N - G saccades when N covers the G gestalt tokens (a prefix of that order); otherwise N
    gestalt tokens spread evenly over the frame (``spread_order``), never the first N rows of the
    gestalt grid."""
    check_tokens(tokens)
    tokens = None if tokens == "all" else tokens
    kinds = host(result.kinds, "result.kinds")
    # The pack is already ordered (gestalt, then saccades by key); a stable sort on kind keeps that
    # order even if a backend ever interleaved them.
    idx = np.flatnonzero(kinds >= 0)
    idx = idx[np.argsort(kinds[idx], kind="stable")]
    if tokens is None or tokens >= len(idx):
        return idx
    gestalt = idx[kinds[idx] == 0]
    if tokens >= len(gestalt):
        return idx[: int(tokens)]
    positions = np.asarray(host(result.positions, "result.positions"), np.float64)[gestalt]
    return np.sort(gestalt[spread_order(positions)[: int(tokens)]])


def spread_order(positions) -> np.ndarray:
    """An order of the points of a grid (``positions`` [n, 2], x and y of each cell's centre) in which
    every prefix is spread evenly over it: cells by the bit-reversed Z-order (Morton) code of their
    (row, column), so the first 4^k of a 2^m x 2^m grid hold one cell of each of its 4^k blocks."""
    pos = np.asarray(positions, np.float64)
    cols = np.unique(pos[:, 0], return_inverse=True)[1].ravel()
    rows = np.unique(pos[:, 1], return_inverse=True)[1].ravel()
    bits = max(1, int(max(cols.max(initial=0), rows.max(initial=0))).bit_length())
    code = np.zeros(len(pos), np.int64)
    for b in range(bits):  # interleave: row bit above column bit
        code |= ((rows >> b) & 1) << (2 * b + 1) | ((cols >> b) & 1) << (2 * b)
    reversed_code = np.zeros_like(code)
    for b in range(2 * bits):
        reversed_code |= ((code >> b) & 1) << (2 * bits - 1 - b)
    return np.argsort(reversed_code, kind="stable")


def token_cells(result, index, h: int, w: int) -> np.ndarray:
    """Raster index (row * w + column) on an h x w grid over the frame of the cell under each token's
    centre: the cell ``gather_features`` centres the token's window on (same float32 arithmetic)."""
    pos = np.asarray(host(result.positions), np.float32)[index]
    width, height = (np.float32(v) for v in result.frame_size)
    ci = np.clip((pos[:, 1] * np.float32(h) / height).astype(np.int64), 0, h - 1)
    cj = np.clip((pos[:, 0] * np.float32(w) / width).astype(np.int64), 0, w - 1)
    return ci * w + cj


DTYPES = ("float32", "float16", "bfloat16", "float64")


def torch_dtype(torch, dtype, device, cuda_default):
    """The dtype a model loads in: ``dtype`` (a floating torch dtype or its name), or ``cuda_default``
    on a CUDA device and float32 on the CPU. ValueError / TypeError for anything else."""
    if dtype is None:
        return cuda_default if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: {dtype!r} is not supported; expected one of {', '.join(DTYPES)} "
                             "(or a torch dtype)")
        return getattr(torch, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch dtype or one of {', '.join(DTYPES)}; got {dtype!r}")
    return dtype


def model_device(device) -> str:
    """The torch device a model loads on, checked before the model loads: 'cpu', 'cuda', 'cuda:N' or
    a torch.device; 'auto' is CUDA when this torch has a usable GPU, else the CPU."""
    import torch

    text = str(device) if isinstance(device, (str, torch.device)) else None
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return text
    if text is not None and (text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit())):
        if not torch.cuda.is_available():
            raise ValueError(f"device: {text!r}, but this torch has no usable CUDA device "
                             "(torch.cuda.is_available() is False); use 'cpu' or 'auto'")
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device: {text!r}, but torch sees {torch.cuda.device_count()} CUDA device(s)")
        return text
    raise ValueError(f"device: {device!r} is not supported; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def checkpoint_folder(path, name: str) -> Path:
    """``path`` as a local checkpoint folder of a ``name`` model (``~`` expanded), after checking that
    torch and transformers import: ValueError saying which is missing otherwise."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ValueError(f"vlm: {name} needs torch and transformers: pip install torch==2.13.0 transformers") from None
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"vlm: {name} needs a checkpoint folder; got {path!r}")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ValueError(f"vlm: {name} checkpoint folder {str(p)!r} does not exist")
    return p


def load_checkpoint(folder: Path, model_class, name: str, dtype, attn_implementation: str | None,
                    image_processor: bool = True) -> tuple:
    """(model, tokenizer, image processor or None) from a local checkpoint folder, nothing
    downloaded; ValueError naming the checkpoint's kind (``name``) when they do not load."""
    from transformers import AutoImageProcessor, AutoTokenizer

    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = model_class.from_pretrained(str(folder), local_files_only=True, dtype=dtype, **kw)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True) if image_processor else None
    except (OSError, ValueError) as e:
        raise ValueError(f"vlm: cannot load a {name} checkpoint from {str(folder)!r}: {e}") from None
    return model, tokenizer, processor


def check_model_type(folder: Path, expected: str) -> None:
    """A checkpoint folder's config.json, if it has one, must name ``expected`` as its model_type."""
    cfg_file = folder / "config.json"
    if cfg_file.exists():
        try:
            cfg = json.loads(cfg_file.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"vlm: {str(cfg_file)!r} is not valid JSON ({e})") from None
        model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
        if model_type is None:
            raise ValueError(f"vlm: {str(folder)!r}'s config.json names no model_type; expected {expected!r} "
                             "(a transformers checkpoint folder, as save_pretrained writes it)")
        if model_type != expected:
            raise ValueError(f"vlm: {str(folder)!r} holds a {model_type!r} model, not {expected!r}")


def check_frames(frames_rgb, results, tokens):
    """(frames as arrays, kept-token indices per frame) after checking each frame against its result."""
    frames_rgb, results = list(frames_rgb), list(results)
    if not frames_rgb or len(frames_rgb) != len(results):
        raise ValueError(f"frames: {len(frames_rgb)} frames and {len(results)} results; expected as many of each, "
                         "at least one")
    arrays, keeps = [], []
    for f, result in zip(frames_rgb, results):
        if hasattr(f, "to_ndarray") and hasattr(f, "planes"):  # an av.VideoFrame, as arrcoc_rt.open yields
            f = f.to_ndarray(format="rgb24")                     # (Stream.ask takes them too)
        a = host(f, "frame")
        if not hasattr(result, "frame_size") or not hasattr(result, "kinds"):
            raise TypeError(f"result: expected the FrameResult of Pipeline.process or Stream.process; got "
                            f"{type(result).__name__}")
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
            raise ValueError(f"frame: shape {a.shape} looks channels-first; expected H x W x 3 uint8 RGB "
                             "(e.g. frame.transpose(1, 2, 0))")
        if a.ndim < 2 or tuple(result.frame_size) != (a.shape[1], a.shape[0]):
            raise ValueError(f"frame: {a.shape[1]}x{a.shape[0]} is not the frame the result was made from "
                             f"({result.frame_size[0]}x{result.frame_size[1]})")
        keep = kept_tokens(result, tokens)
        if len(keep) == 0:
            raise ValueError("result: the token pack holds no gestalt or saccade tokens")
        arrays.append(a)
        keeps.append(keep)
    return arrays, keeps


def timed_generate(adapter, inputs: dict, max_new_tokens: int, now=time.perf_counter, entropies: list | None = None):
    """``adapter.generate`` timed: (text, prefill ms, decode ms, new tokens). Prefill runs from the
    call to the first new token's logits, stamped by a logits processor (wall clock, through
    ``now``: pass a clock that synchronizes the GPU for CUDA timings); prefill/decode/tokens are None
    when the adapter's ``generate`` takes no extra keywords. ``entropies``: a list that receives each
    new token's normalized entropy (the entropy of the next-token distribution / log(vocabulary):
    0 = certain, 1 = uniform)."""
    stamps = []
    kw = {}
    params = inspect.signature(adapter.generate).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        from transformers import LogitsProcessor, LogitsProcessorList

        class _Stamp(LogitsProcessor):
            def __call__(self, input_ids, scores):
                stamps.append(now())
                if entropies is not None:
                    entropies.append(normalized_entropy(scores))
                return scores

        kw["logits_processor"] = LogitsProcessorList([_Stamp()])
    elif entropies is not None:
        raise TypeError(f"{type(adapter).__name__}.generate takes no logits processor: its uncertainty cannot be measured")
    t0 = now()
    text = adapter.generate(inputs, max_new_tokens=max_new_tokens, **kw)
    t1 = now()
    if not stamps:
        return text, None, None, None
    return text, (stamps[0] - t0) * 1e3, (t1 - stamps[0]) * 1e3, len(stamps)


def normalized_entropy(scores) -> float:
    """The entropy of softmax(scores) over the vocabulary, divided by log(vocabulary size), averaged
    over the batch: 0 when one token takes all the probability, 1 when all are equally likely."""
    torch = __import__("torch")
    logp = torch.log_softmax(scores.float(), dim=-1)
    h = -(logp.exp() * logp).nansum(dim=-1)  # nansum: -inf logits (masked tokens) have p = 0
    return float((h / math.log(scores.shape[-1])).mean())


class PackSnapshot:
    """The parts of a FrameResult an adapter reads, copied, so an answer can be computed after the
    pipeline has moved on (its gather uses the float64 reference with the copied positions)."""

    def __init__(self, result):
        self.kinds = np.array(host(result.kinds))
        self.positions = np.array(host(result.positions), np.float64)
        self.levels = np.array(host(result.levels))
        self.budgets = np.array(host(result.budgets))
        self.patches = np.array(host(result.patches))
        self.frame_size = tuple(result.frame_size)
        self.frame_index = result.frame_index
        self.pts = result.pts
        self._pipeline = None

    def gather_features(self, features, out=None, *, stream=None):
        """As FrameResult.gather_features, on the host (the float64 reference's formula): features a
        NumPy array or a tensor anywhere (copied to the host); ``out`` (a float32 NumPy [N, C]) is
        written and returned."""
        from ..reference import gather_features

        w, h = self.frame_size
        got = gather_features(np.asarray(host(features, "features"), np.float64), self.positions, self.levels, w,
                              h).astype(np.float32)
        if out is None:
            return got
        if not isinstance(out, np.ndarray) or out.shape != got.shape or out.dtype != np.float32:
            raise ValueError(f"out: expected a float32 NumPy array of shape {list(got.shape)}; got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        out[...] = got
        return out


class VLMAdapter(ABC):
    """Feeds one FrameResult's tokens to a frozen vision-language model.

    Use::

        adapter = arrcoc_rt.vlm.make_adapter("llava:/path/to/llava-1.5", device="cpu", tokens=64)
        result = pipe.process(frame)                     # frame: H x W x 3 uint8 RGB
        inputs = adapter.prepare(frame, result, "What is on the table?")
        text = adapter.generate(inputs, max_new_tokens=16)

    ``prepare`` must run before the pipeline's next ``process`` (the token pack's feature gather
    reads the current frame's allocation).
    """

    name = "vlm"

    @classmethod
    @abstractmethod
    def load(cls, path, device: str = "cpu", dtype=None, **options) -> "VLMAdapter":
        """A model from a local checkpoint folder; nothing is downloaded."""

    @abstractmethod
    def vision_features(self, frame_rgb):
        """[C, h, w] float32 features of the model's own vision tower on its patch grid (before
        the projector), covering the whole frame."""

    @abstractmethod
    def prepare(self, frame_rgb, result, prompt: str, *, tokens: int | str | None = None) -> dict:
        """The model inputs for ``prompt`` about ``frame_rgb`` as seen through ``result``'s tokens.
        ``tokens``: how many of them (``kept_tokens``) for this call; 'all' for every kept token;
        None for the adapter's own ``tokens=`` (all kept tokens unless it was given one)."""

    @abstractmethod
    def generate(self, inputs: dict, max_new_tokens: int = 16, **kw) -> str:
        """Greedy (by default) decoding from ``prepare``'s inputs; the new text only."""

    def _gather(self, result, features):
        """[N, C] float32 on the model's device: result.gather_features over the model's own grid
        ``features`` [C, h, w] (a torch tensor; adapters set ``_torch`` and ``device``). On the
        pipeline's CUDA device the gather runs there, on torch's current stream."""
        torch = self._torch
        pipe = result._pipeline
        if pipe is None or pipe.device == "cpu":
            return torch.from_numpy(result.gather_features(features.cpu().numpy())).to(self.device)
        f = features.to(f"cuda:{pipe.cuda_device}").contiguous()
        out = torch.empty((len(host(result.kinds)), f.shape[0]), dtype=torch.float32, device=f.device)
        result.gather_features(f, out, stream=torch.cuda.current_stream(f.device).cuda_stream)
        torch.cuda.current_stream(f.device).synchronize()
        return out.to(self.device)

    def prepare_frames(self, frames_rgb, results, prompt: str, *, tokens: int | str | None = None) -> dict:
        """The model inputs for ``prompt`` about several frames, oldest first, each seen through its
        own result's tokens (``tokens=N`` per frame, so up to k x N visual tokens in all). The same
        keys as ``prepare``, with ``token_index`` a list (one array per frame) and ``frame_tokens``
        the visual-token count of each frame. One frame is ``prepare``; adapters that cannot take
        several frames raise NotImplementedError for more."""
        frames_rgb, results = list(frames_rgb), list(results)
        if not frames_rgb or len(frames_rgb) != len(results):
            raise ValueError(f"frames: {len(frames_rgb)} frames and {len(results)} results; expected as many of "
                             "each, at least one")
        if len(frames_rgb) == 1:
            out = self.prepare(frames_rgb[0], results[0], prompt, tokens=tokens)
            return dict(out, token_index=[out.get("token_index")], frame_tokens=[out["num_visual_tokens"]])
        raise NotImplementedError(f"{type(self).__name__} does not take several frames")

    def prepare_features(self, features, prompt: str, *, positions=None, grid=None) -> dict:
        """Model inputs for ``prompt`` with exactly these N visual tokens, in this order, chosen by
        something other than a token pack (e.g. pooling or pruning the model's own grid, as the
        experiment's baselines do): ``features`` [N, C] in the space of ``vision_features``' channels
        (grid cells, or means of cells). ``positions`` [N, 2]: each token's (x, y) on that grid in
        cells (cell (row i, column j) has its centre at (j + 0.5, i + 0.5)), and ``grid`` its (h, w),
        for models whose image tokens carry 2-D positions. The same keys as ``prepare``
        (``num_visual_tokens`` N). Adapters that cannot take a chosen set of features raise
        NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} does not take a chosen set of visual features")


KINDS = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")


def check_features(torch, features):
    """``features`` as a 2-D tensor [N, C], N >= 1, finite (a NaN or inf would reach every answer
    silently; the pack's own gather refuses them too)."""
    f = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if f.ndim != 2 or f.shape[0] < 1:
        raise ValueError(f"features: expected [N, C] with N >= 1; got shape {tuple(f.shape)}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("features: contains NaN or inf")
    return f


def check_cells(positions, n: int, grid) -> tuple:
    """``positions`` [n, 2] (x, y) in cells of a ``grid`` (h, w): finite and on the grid (a pack's
    pixel positions passed as they are fell on its last cell, silently). Returns (positions, h, w)."""
    try:
        h, w = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid: {grid!r} is not (h, w) of a grid of cells") from None
    if h < 1 or w < 1:
        raise ValueError(f"grid: {grid!r} is not (h, w) of a grid of cells")
    pos = np.asarray(positions, np.float64)
    if pos.shape != (n, 2) or not np.all(np.isfinite(pos)):
        raise ValueError(f"positions: expected [{n}, 2] finite (x, y) in cells; got shape {pos.shape}")
    if n and (pos[:, 0].min() < 0 or pos[:, 0].max() > w or pos[:, 1].min() < 0 or pos[:, 1].max() > h):
        raise ValueError(f"positions: x in [{pos[:, 0].min():g}, {pos[:, 0].max():g}], y in [{pos[:, 1].min():g}, "
                         f"{pos[:, 1].max():g}] is off the {h} x {w} grid; expected cells (a pack's pixel positions "
                         f"times (w / width, h / height))")
    return pos, h, w


def make_adapter(spec, **options) -> VLMAdapter:
    """``'llava:PATH'`` -> LlavaAdapter.load(PATH, **options); ``'llava_next:PATH'`` ->
    LlavaNextAdapter.load(PATH, **options); ``'qwen2_vl:PATH'`` /
    ``'qwen2_5_vl:PATH'`` -> Qwen2VLAdapter.load(PATH, **options); a VLMAdapter passes through."""
    if isinstance(spec, VLMAdapter):
        return spec
    expected = " or ".join(f"'{k}:PATH'" for k in KINDS)
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"vlm: {spec!r} is not understood; expected {expected} (a local checkpoint folder)")
    kind, path = spec.split(":", 1)
    if kind == "llava":
        from .llava import LlavaAdapter

        return LlavaAdapter.load(path, **options)
    if kind == "llava_next":
        from .llava_next import LlavaNextAdapter

        return LlavaNextAdapter.load(path, **options)
    if kind in ("qwen2_vl", "qwen2_5_vl"):
        from .qwen2_vl import Qwen2VLAdapter

        return Qwen2VLAdapter.load(path, model_type=kind, **options)
    raise ValueError(f"vlm: model kind {kind!r} is not supported; expected {expected}")
