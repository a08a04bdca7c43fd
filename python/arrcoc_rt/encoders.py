"""Encoders: features in which a query means something.

The ``Encoder`` protocol (what a Pipeline / Stream takes as ``encoder=``):
    encode_image(texture) -> [C, h4, w4] features on the patch grid
    encode_text(text) -> [C]             (may raise TypeError: unsupported)
    encode_exemplar(image) -> [C]        image: H x W x 3 uint8 or a path

``BuiltinEncoder`` (the default) is weight-free: per-patch histograms of colour opponents, gradient
orientation and luminance computed by our kernels on both backends (csrc/shared/semantic_math.h),
32 dims. It finds an exemplar object again under moderate changes of scale and light; it has no
notion of words, so text queries need a CLIP/SigLIP encoder. An exemplar is matched two ways: as a
bag of its patches' descriptors (``encode_exemplar``) and by its layout (``exemplar_layout``:
descriptor maps at three scales, correlated with the frame's cells of 8, 16 or 32 px), so that a
small or thin object is found even when the exemplar's box holds mostly background.

``PCA16`` fits the 16 components written to texture channels 17..32, incrementally over the first
frames (or loaded from an .npz).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from . import _native
from .images import pil_to_rgb8
from .runtime import resolve_device

DIMS = _native.BUILTIN_DESCRIPTOR_DIMS


MIN_EXEMPLAR_SIDE = 8  # the finest layout cell, pixels: a smaller exemplar is warned about


def read_exemplar(image) -> np.ndarray:
    """An exemplar as a contiguous H x W x 3 uint8 array, each side 1..16384 (the frames' limit); a
    path is read as RGB. Anything else is a clear error, checked before any pixel is copied (a
    broadcast view may describe terabytes)."""
    from .texture import MAX_DIMENSION

    if isinstance(image, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image) as im:
                if not (1 <= im.width <= MAX_DIMENSION and 1 <= im.height <= MAX_DIMENSION):
                    raise ValueError(f"query: the exemplar image {str(image)!r} is {im.width} x {im.height}; "
                                     f"expected 1..{MAX_DIMENSION} pixels a side")
                image = pil_to_rgb8(im, f"query: the exemplar image {str(image)!r}")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise ValueError(f"query: cannot read the exemplar image {str(image)!r}: {e}") from None
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise TypeError(f"query: an exemplar image must be H x W x 3 uint8; got {a.dtype} {a.shape}")
    if not (1 <= a.shape[0] <= MAX_DIMENSION and 1 <= a.shape[1] <= MAX_DIMENSION):
        raise ValueError(f"query: the exemplar image is {a.shape[1]} x {a.shape[0]}; expected 1..{MAX_DIMENSION} "
                         "pixels a side")
    return np.ascontiguousarray(a)


class BuiltinEncoder:
    """Weight-free per-patch descriptors (see the module docstring)."""

    name = "builtin"
    dims = DIMS

    def __init__(self, device: str = "auto", num_threads: int = 0):
        self.device, self.cuda_device = resolve_device(device)
        self.num_threads = num_threads

    def encode_image(self, frame) -> np.ndarray:
        """[32, h4, w4] descriptors of a frame (host array)."""
        from .texture import TextureBuilder

        a = np.asarray(frame)
        if a.ndim != 3 or a.dtype != np.uint8:
            raise TypeError(f"frame: expected an H x W x 3 uint8 image; got {a.dtype} {a.shape}")
        b = TextureBuilder(a.shape[1], a.shape[0], device="cpu", dtype="float32")
        b.build(a)
        enc = _native.SemanticEncoder(a.shape[1], a.shape[0], "cpu", 0, self.num_threads, DIMS)
        enc.encode(b._native, False, 0)
        return enc.features()

    max_exemplar_patches = 64

    def encode_exemplar(self, image) -> np.ndarray:
        """[K, 32] query vectors: the descriptors of the exemplar's patches (K <= 64, evenly
        subsampled). A frame patch's similarity is its best match among them."""
        a = read_exemplar(image)
        if min(a.shape[:2]) < MIN_EXEMPLAR_SIDE:
            warnings.warn(f"query: the exemplar is {a.shape[1]} x {a.shape[0]} px, smaller than one "
                          f"{MIN_EXEMPLAR_SIDE}-px layout cell: it holds almost no texture to match (the saccades may "
                          "go anywhere); crop at least the object", RuntimeWarning, stacklevel=5)
        f = self.encode_image(a).reshape(DIMS, -1).T  # [patches, 32]
        if len(f) > self.max_exemplar_patches:
            f = f[np.linspace(0, len(f) - 1, self.max_exemplar_patches).round().astype(int)]
        return np.ascontiguousarray(f, np.float32)

    layout_scales = (0.5, 1.0, 2.0)  # the exemplar's size in the frame, relative to its own

    def exemplar_layout(self, image) -> list:
        """Layout templates of an exemplar: [(descriptors [32, th, tw] float32, cell_px), ...], one per
        scale in ``layout_scales`` (see ``layout_template_shape``)."""
        from .texture import TextureBuilder
        from PIL import Image

        a = read_exemplar(image)
        templates = []
        for scale in self.layout_scales:
            tw, th, cell = layout_template_shape(a.shape[1], a.shape[0], scale)
            resized = np.asarray(Image.fromarray(a).resize((tw * cell, th * cell), Image.BILINEAR))
            b = TextureBuilder(tw * cell, th * cell, device="cpu", dtype="float32")
            b.build(np.ascontiguousarray(resized))
            enc = _native.SemanticEncoder(tw * cell, th * cell, "cpu", 0, self.num_threads, DIMS)
            templates.append((np.ascontiguousarray(enc.encode_cells(b._native, cell, 0)), cell))
        return templates

    def encode_text(self, text: str) -> np.ndarray:
        raise TypeError("query: the built-in encoder has no notion of text; use encoder='clip:PATH' or "
                        "'siglip:PATH' (a local CLIP/SigLIP checkpoint) for text queries, or give an exemplar "
                        "image, a vector or a similarity map")


MAX_LAYOUT_CELLS = _native.MAX_LAYOUT_CELLS


def layout_template_shape(width: int, height: int, scale: float) -> tuple[int, int, int]:
    """(tw, th, cell_px) of the layout template of a width x height exemplar seen at ``scale``: the
    finest cell size (8, 16 or 32 px) at which it spans at most MAX_LAYOUT_CELLS cells; larger ones
    are resampled to that many 32-px cells (keeping the aspect ratio)."""
    w, h = scale * width, scale * height
    for cell in (8, 16, 32):
        tw, th = max(1, round(w / cell)), max(1, round(h / cell))
        if tw * th <= MAX_LAYOUT_CELLS:
            return tw, th, cell
    f = (MAX_LAYOUT_CELLS / (tw * th)) ** 0.5
    tw, th = max(1, int(tw * f)), max(1, int(th * f))
    while tw * th > MAX_LAYOUT_CELLS:  # a very long, thin exemplar
        tw, th = (tw - 1, th) if tw >= th else (tw, th - 1)
    return tw, th, 32


class PCA16:
    """Incremental PCA to 16 components: ``partial_fit`` accumulates the mean and covariance of
    feature vectors; ``components`` [16, C] and ``mean`` [C] are the top eigenvectors."""

    def __init__(self, dims: int):
        self.dims = dims
        self.n = 0
        self._sum = np.zeros(dims)
        self._outer = np.zeros((dims, dims))
        self.mean = None
        self.components = None

    def partial_fit(self, features: np.ndarray) -> None:
        """Adds feature vectors: [C, ...] (e.g. [C, h4, w4])."""
        x = np.asarray(features, np.float64).reshape(self.dims, -1)
        self.n += x.shape[1]
        self._sum += x.sum(axis=1)
        self._outer += x @ x.T
        mean = self._sum / self.n
        cov = self._outer / self.n - np.outer(mean, mean)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:16]
        comps = vecs[:, order].T
        comps *= np.sign(comps[np.arange(len(order)), np.abs(comps).argmax(axis=1)])[:, None]  # fixed signs
        c = np.zeros((16, self.dims))
        c[: len(order)] = comps
        self.mean, self.components = mean.astype(np.float32), c.astype(np.float32)

    def save(self, path) -> None:
        np.savez(path, mean=self.mean, components=self.components, n=self.n)

    @classmethod
    def load(cls, path) -> "PCA16":
        from .weights import read_npz

        z = read_npz(path, "pca")
        if "mean" not in z or "components" not in z:
            raise ValueError(f"pca: {str(path)!r} must hold mean [C] and components [16, C]; it holds {sorted(z)}")
        try:
            mean, comps = np.asarray(z["mean"], np.float32), np.asarray(z["components"], np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"pca: {str(path)!r}: mean and components must be numeric arrays ({e})") from None
        if comps.ndim != 2 or comps.shape[0] != 16 or mean.shape != (comps.shape[1],):
            raise ValueError(f"pca: {str(path)!r} must hold mean [C] and components [16, C]")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(comps))):
            raise ValueError(f"pca: {str(path)!r} contains NaN or inf")
        p = cls(mean.shape[0])
        p.mean, p.components, p.n = mean, comps, -1
        return p


_DEFAULT_NORM = {"clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
                 "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


class HFEncoder:
    """CLIP or SigLIP from a local checkpoint folder through Hugging Face transformers (no network:
    ``from_pretrained(path, local_files_only=True)``); float16 on a GPU, float32 on the CPU.

    Dense features in the joint image-text space: the vision tower's last patch tokens, through the
    post-LayerNorm and (CLIP) the visual projection — the MaskCLIP recipe — on the model's own patch
    grid; resampled to arrcoc's patch grid by the Pipeline. Text: ``get_text_features``. Exemplars:
    ``get_image_features`` of the exemplar (the pooled embedding, one vector)."""

    def __init__(self, path, kind: str = "clip", device: str = "auto"):
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ValueError("encoder: CLIP/SigLIP needs torch and transformers: pip install torch==2.13.0 "
                             "transformers") from None
        p = Path(path)
        if not p.is_dir():
            raise ValueError(f"encoder: {kind} checkpoint folder {str(p)!r} does not exist")
        try:
            self.model = AutoModel.from_pretrained(str(p), local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(f"encoder: cannot load a {kind} checkpoint from {str(p)!r}: {e}") from None
        if self.model.config.model_type != kind:
            raise ValueError(f"encoder: {str(p)!r} holds a {self.model.config.model_type!r} model, not {kind!r}")
        self.kind, self.name = kind, kind
        dev, ordinal = resolve_device(device)
        self.torch_device = f"cuda:{ordinal}" if dev == "cuda" and torch.cuda.is_available() else "cpu"
        self.dtype = torch.float16 if self.torch_device.startswith("cuda") else torch.float32
        self.model = self.model.to(self.torch_device, self.dtype).eval()
        vc = self.model.config.vision_config
        self.image_size, self.patch = int(vc.image_size), int(vc.patch_size)
        self.dims = int(self.model.config.projection_dim) if kind == "clip" else int(vc.hidden_size)
        mean, std = _DEFAULT_NORM[kind]
        pp = p / "preprocessor_config.json"
        if pp.exists():
            import json

            cfg = json.loads(pp.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self._mean = torch.tensor(mean, dtype=self.dtype, device=self.torch_device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=self.dtype, device=self.torch_device).view(1, 3, 1, 1)
        self._torch = torch

    def _pixels(self, image):
        from PIL import Image

        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise TypeError(f"image: expected H x W x 3 uint8; got {a.dtype} {a.shape}")
        im = Image.fromarray(np.ascontiguousarray(a)).resize((self.image_size, self.image_size), Image.BICUBIC)
        t = self._torch.from_numpy(np.asarray(im).copy()).to(self.torch_device).permute(2, 0, 1)[None]
        return (t.to(self.dtype) / 255.0 - self._mean) / self._std

    @staticmethod
    def _tensor(out):
        return out if hasattr(out, "shape") else (out.pooler_output if hasattr(out, "pooler_output") else out[0])

    def encode_image(self, frame) -> np.ndarray:
        """[C, g, g] dense features on the model's patch grid (g = image_size / patch_size)."""
        with self._torch.no_grad():
            vm = self.model.vision_model
            tokens = vm(pixel_values=self._pixels(frame)).last_hidden_state
            g = self.image_size // self.patch
            if self.kind == "clip":
                tokens = self.model.visual_projection(vm.post_layernorm(tokens[:, 1:]))  # drop the class token
            tokens = tokens[0, -g * g:].float()
        return tokens.T.reshape(-1, g, g).cpu().numpy()

    def encode_text(self, text: str) -> np.ndarray:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("query: the text query is empty")
        batch = self.tokenizer([text], padding="max_length" if self.kind == "siglip" else True, truncation=True,
                               max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt")
        batch = {k: v.to(self.torch_device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with self._torch.no_grad():
            out = self._tensor(self.model.get_text_features(**batch))
        return out[0].float().cpu().numpy()

    def encode_exemplar(self, image) -> np.ndarray:
        image = read_exemplar(image)
        with self._torch.no_grad():
            out = self._tensor(self.model.get_image_features(pixel_values=self._pixels(image)))
        return out.float().cpu().numpy().reshape(1, -1)



def make_encoder(spec, device: str = "auto"):
    """None -> None; 'builtin' -> BuiltinEncoder; 'clip:PATH' / 'siglip:PATH' -> HFEncoder; an object
    with encode_image -> itself."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "builtin":
            return BuiltinEncoder(device)
        if spec.startswith(("clip:", "siglip:")):
            kind, path = spec.split(":", 1)
            return HFEncoder(path, kind, device)
        raise ValueError(f"encoder: {spec!r} is not understood; expected 'builtin' (or an Encoder object)")
    if not hasattr(spec, "encode_image"):
        raise TypeError(f"encoder: expected 'builtin' or an object with encode_image(); got {type(spec).__name__}")
    return spec
