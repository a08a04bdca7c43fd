"""The cascade written the way a user would with scikit-image + NumPy, as the baseline arrcoc's
cascade is compared against (benchmarks/bench_stages.py and scripts/floors.py): SLIC with the
cascade's settings (48 segments, 3 iterations, no Lab conversion or connectivity pass: arrcoc does
neither) on the same level-2 colour features, then mean saliency x foveal weight + motion per
segment, the best 10 segments and their best 50 patches. The same kind of result, not the same bits."""

import numpy as np


def cascade_skimage(texture):
    """A callable that runs the peer on ``texture`` (an arrcoc_rt Texture's host planes, read once here)."""
    from skimage import segmentation

    lab = np.stack([np.asarray(texture.channel(c, 2), np.float32) for c in (3, 15, 16)], axis=-1)
    sal2, ecc2, mot2 = (np.asarray(texture.channel(c, 2), np.float32) for c in (11, 5, 10))
    sal4, mot4 = (np.asarray(texture.channel(c, 4), np.float32) for c in (11, 10))
    h4, w4 = sal4.shape

    def run():
        labels = segmentation.slic(lab, n_segments=48, compactness=0.1, max_num_iter=3, start_label=0,
                                   convert2lab=False, enforce_connectivity=False, channel_axis=-1)
        n = labels.max() + 1
        count = np.maximum(np.bincount(labels.ravel(), minlength=n), 1)
        mean = lambda v: np.bincount(labels.ravel(), v.ravel(), n) / count  # noqa: E731
        score = mean(sal2) * (1 - 0.5 * mean(ecc2)) + mean(mot2)
        kept = np.argsort(-score)[:10]
        patch_label = labels[np.minimum(4 * np.arange(h4) + 2, labels.shape[0] - 1)][:, np.minimum(
            4 * np.arange(w4) + 2, labels.shape[1] - 1)]
        key = (sal4 + mot4).ravel()
        return [np.flatnonzero(patch_label.ravel() == k)[np.argsort(-key[patch_label.ravel() == k])[:50]]
                for k in kept]

    return run
