"""Encoders: features in which a query means something.

The ``Encoder`` protocol (what a Pipeline / Stream takes as ``encoder=``):
    encode_image(texture) -> [C, h4, w4] features on the patch grid
    encode_text(text) -> [C]             (may raise TypeError: unsupported)
    encode_exemplar(image) -> [C]        image: H x W x 3 uint8 or a path

``BuiltinEncoder`` (the default) is weight-free: per-patch histograms of colour opponents, gradient
orientation and luminance computed by our kernels on both backends (csrc/shared/semantic_math.h),
32 dims. It finds an exemplar object again under moderate changes of scale and light; it has no
notion of words, so text queries need a CLIP/SigLIP encoder.

``PCA16`` fits the 16 components written to texture channels 17..32, incrementally over the first
frames (or loaded from an .npz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _native
from .runtime import resolve_device

DIMS = _native.BUILTIN_DESCRIPTOR_DIMS


class BuiltinEncoder:
    """Weight-free per-patch descriptors (see the module docstring)."""

    name = "builtin"
    dims = DIMS

    def __init__(self, device: str = "auto", num_threads: int = 0):
        self.device, self.cuda_device = resolve_device(device)
        self.num_threads = num_threads

    def native(self, width: int, height: int):
        """The kernel object for frames up to width x height (one per Pipeline)."""
        return _native.SemanticEncoder(width, height, self.device, self.cuda_device, self.num_threads)

    def encode_image(self, frame) -> np.ndarray:
        """[32, h4, w4] descriptors of a frame (host array)."""
        from .texture import TextureBuilder

        a = np.asarray(frame)
        if a.ndim != 3 or a.dtype != np.uint8:
            raise TypeError(f"frame: expected an H x W x 3 uint8 image; got {a.dtype} {a.shape}")
        b = TextureBuilder(a.shape[1], a.shape[0], "cpu", "float32")
        b.build(a)
        enc = _native.SemanticEncoder(a.shape[1], a.shape[0], "cpu", 0, self.num_threads)
        enc.encode(b._native, False, 0)
        return enc.features()

    max_exemplar_patches = 64

    def encode_exemplar(self, image) -> np.ndarray:
        """[K, 32] query vectors: the descriptors of the exemplar's patches (K <= 64, evenly
        subsampled). A frame patch's similarity is its best match among them."""
        if isinstance(image, (str, Path)):
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(image) as im:
                    image = np.asarray(im.convert("RGB"))
            except (OSError, UnidentifiedImageError) as e:
                raise ValueError(f"query: cannot read the exemplar image {str(image)!r}: {e}") from None
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise TypeError(f"query: an exemplar image must be H x W x 3 uint8; got {a.dtype} {a.shape}")
        f = self.encode_image(np.ascontiguousarray(a)).reshape(DIMS, -1).T  # [patches, 32]
        if len(f) > self.max_exemplar_patches:
            f = f[np.linspace(0, len(f) - 1, self.max_exemplar_patches).round().astype(int)]
        return np.ascontiguousarray(f, np.float32)

    def encode_text(self, text: str) -> np.ndarray:
        raise TypeError("query: the built-in encoder has no notion of text; use encoder='clip:PATH' or "
                        "'siglip:PATH' (a local CLIP/SigLIP checkpoint) for text queries, or give an exemplar "
                        "image, a vector or a similarity map")


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
        with np.load(path) as z:
            mean, comps = z["mean"].astype(np.float32), z["components"].astype(np.float32)
        if comps.ndim != 2 or comps.shape[0] != 16 or mean.shape != (comps.shape[1],):
            raise ValueError(f"pca: {str(path)!r} must hold mean [C] and components [16, C]")
        p = cls(mean.shape[0])
        p.mean, p.components, p.n = mean, comps, -1
        return p


def make_encoder(spec, device: str = "auto"):
    """None -> None; 'builtin' -> BuiltinEncoder; an object with encode_image -> itself."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "builtin":
            return BuiltinEncoder(device)
        if spec.startswith(("clip:", "siglip:")):
            raise ValueError(f"encoder: {spec!r}: CLIP/SigLIP checkpoints are not supported in this version yet; "
                             "use encoder='builtin'")
        raise ValueError(f"encoder: {spec!r} is not understood; expected 'builtin' (or an Encoder object)")
    if not hasattr(spec, "encode_image"):
        raise TypeError(f"encoder: expected 'builtin' or an object with encode_image(); got {type(spec).__name__}")
    return spec
