"""Frozen vision-language models fed with arrcoc_rt's token packs (needs torch and transformers).

``make_adapter("llava:PATH")`` loads a local LLaVA-1.5 checkpoint; ``adapter.prepare(frame, result,
prompt)`` builds its inputs from a FrameResult's tokens and ``adapter.generate(inputs)`` answers."""

from .base import PackSnapshot, VLMAdapter, kept_tokens, make_adapter

__all__ = ["PackSnapshot", "VLMAdapter", "kept_tokens", "make_adapter", "LlavaAdapter"]


def __getattr__(name):
    # Lazy, so importing arrcoc_rt.vlm does not import torch.
    if name == "LlavaAdapter":
        from .llava import LlavaAdapter

        return LlavaAdapter
    raise AttributeError(name)
