"""Frozen vision-language models fed with arrcoc_rt's token packs (needs torch and transformers).

``make_adapter("llava:PATH")`` loads a local LLaVA-1.5 checkpoint, ``"llava_next:PATH"`` a LLaVA-NeXT
(1.6) one, ``"qwen2_vl:PATH"`` / ``"qwen2_5_vl:PATH"`` a Qwen2-VL / Qwen2.5-VL one;
``adapter.prepare(frame, result, prompt)`` builds its inputs from a FrameResult's tokens
(``prepare_frames`` from several frames', ``prepare_features`` from features chosen otherwise) and
``adapter.generate(inputs)`` answers."""

from .base import PackSnapshot, VLMAdapter, kept_tokens, make_adapter

__all__ = ["PackSnapshot", "VLMAdapter", "kept_tokens", "make_adapter", "LlavaAdapter", "LlavaNextAdapter",
           "Qwen2VLAdapter"]


def __getattr__(name):
    # Lazy, so importing arrcoc_rt.vlm does not import torch.
    if name == "LlavaAdapter":
        from .llava import LlavaAdapter

        return LlavaAdapter
    if name == "LlavaNextAdapter":
        from .llava_next import LlavaNextAdapter

        return LlavaNextAdapter
    if name == "Qwen2VLAdapter":
        from .qwen2_vl import Qwen2VLAdapter

        return Qwen2VLAdapter
    raise AttributeError(name)
