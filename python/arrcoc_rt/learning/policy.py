"""The balancer as a trainable torch module: the same float64 formulas as the reference
(arrcoc_rt.reference.allocate_tokens: mlp_raw, spatial diversity, opponent mix, min-max), so the
weights it learns load into the weights file that both backends run (arrcoc_rt.weights).

Selection for training (see docs/TRAINING.md): the S saccades are sampled without replacement from
the candidates (Gumbel top-S, Plackett-Luce log-probability) with logits key / temperature; at
evaluation and at inference the selection is the pipeline's own, the top S by key.
"""

from __future__ import annotations

import numpy as np

from .. import reference as R
from ..weights import SHAPES, validate

_MLP_KEYS = tuple(SHAPES)  # the balancer's MLP, dials and mix, and the context network


def _torch():
    import torch

    return torch


class BalancerPolicy:
    """Balancer parameters as float64 torch tensors (``params``), with the reference's forward."""

    def __init__(self, weights: dict):
        torch = _torch()
        w = validate(weights)
        self.params = {k: torch.tensor(np.asarray(w[k], np.float64), requires_grad=True) for k in _MLP_KEYS}

    def parameters(self) -> list:
        return [self.params[k] for k in _MLP_KEYS]

    def weights(self) -> dict:
        """The learned parameters in the weights-file layout (float32, validated)."""
        return validate({k: self.params[k].detach().numpy().astype(np.float32).reshape(SHAPES[k]) for k in _MLP_KEYS},
                        "trained weights")

    def raw(self, info, sal, query, dropout: float = 0.0, rng: np.random.Generator | None = None):
        """reference.mlp_raw in torch: sigmoid(W3 ReLU(LN2(W2 ReLU(LN1(W1 x + b1)) + b2)) + b3), with
        seed 004's dropout after each hidden layer when training (``dropout`` > 0; masks from ``rng``,
        so a run stays deterministic and resumable)."""
        torch = _torch()
        p = self.params

        def norm(h, gamma, beta):
            mu = h.mean(-1, keepdim=True)
            var = ((h - mu) ** 2).mean(-1, keepdim=True)
            return torch.relu((h - mu) / torch.sqrt(var + 1e-5) * gamma + beta)

        def drop(h):
            if dropout <= 0.0:
                return h
            keep = torch.from_numpy(rng.random(tuple(h.shape)) >= dropout)
            return h * keep / (1.0 - dropout)

        x = torch.stack([info, sal, query], dim=-1)
        h = drop(norm(x @ p["W1"].T + p["b1"], p["ln_gamma"], p["ln_beta"]))
        h = drop(norm(h @ p["W2"].T + p["b2"], p["ln2_gamma"], p["ln2_beta"]))
        return torch.sigmoid((h @ p["W3"].T + p["b3"])[:, 0])

    def context_weights(self, x):
        """reference.context_weights in torch: softmax(ctx_W2 ReLU(ctx_W1 x + ctx_b1) + ctx_b2)."""
        torch = _torch()
        p = self.params
        h = torch.relu(p["ctx_W1"] @ torch.as_tensor(np.asarray(x, np.float64)) + p["ctx_b1"])
        return torch.softmax(p["ctx_W2"] @ h + p["ctx_b2"], 0)

    def key(self, info, sal, query, px, py, dropout: float = 0.0, rng: np.random.Generator | None = None,
            context=None):
        """The 'balanced' strategy's key of each candidate on a frame without history (no temporal
        blend, no motion boost): min-max of mix . (T1, T2, T3), the scores first weighted by the
        context network when ``context`` (its 40 inputs, reference.context_inputs) is given. The spatial diversity is measured
        against the K best by raw without a gradient through that choice (it is a ranking)."""
        torch = _torch()
        p = self.params
        if context is not None:  # the context network's weights of the three scores (the kernels' 3 w)
            w = self.context_weights(context)
            info, sal, query = 3 * w[0] * info, 3 * w[1] * sal, 3 * w[2] * query
        raw = self.raw(info, sal, query, dropout, rng)
        div = torch.from_numpy(R.spatial_diversity(raw.detach().numpy(), px, py))
        lam = torch.sigmoid(p["lambda_logits"])
        t1 = lam[0] * info + (1 - lam[0]) * query
        t2 = lam[1] * sal + (1 - lam[1]) * (1 - sal)
        t3 = raw + (1 - lam[2]) * 0.3 * div
        b = p["mix"][0] * t1 + p["mix"][1] * t2 + p["mix"][2] * t3
        spread = b.max() - b.min()
        # All keys tied (e.g. one candidate): 0.5 each, still on the graph (a zero gradient; a
        # detached constant made backward() fail for the whole step).
        return (b - b.min()) / spread if float(spread.detach()) > 0 else b * 0.0 + 0.5


def sample_order(key, count: int, temperature: float, rng: np.random.Generator):
    """(order, log_prob): ``count`` candidates drawn without replacement with probabilities
    softmax(key / temperature) (Gumbel top-k), and the Plackett-Luce log-probability of that order."""
    torch = _torch()
    logits = key / temperature
    g = torch.from_numpy(-np.log(-np.log(rng.uniform(1e-12, 1.0, size=key.shape[0]))))
    order = torch.argsort(-(logits.detach() + g), stable=True)[:count]
    chosen = logits[order]
    # log p = sum_k (l_k - logsumexp of the logits not chosen before k)
    rest = torch.ones(key.shape[0], dtype=torch.bool)
    log_prob = logits.new_zeros(())
    for k in range(order.shape[0]):
        log_prob = log_prob + chosen[k] - torch.logsumexp(logits[rest], 0)
        rest = rest.clone()
        rest[order[k]] = False
    return order.numpy(), log_prob


def top_order(key, count: int) -> np.ndarray:
    """The pipeline's selection: the ``count`` largest keys, ties to the lower index."""
    k = np.asarray(key, np.float64)
    return np.array(sorted(range(len(k)), key=lambda i: (-k[i], i))[:count], np.int64)
