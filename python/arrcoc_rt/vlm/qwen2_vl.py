"""Qwen2-VL and Qwen2.5-VL (transformers' Qwen2VLForConditionalGeneration and
Qwen2_5_VLForConditionalGeneration, unmodified) fed with arrcoc_rt tokens."""

from __future__ import annotations

import json

import numpy as np

from .base import (VLMAdapter, call_tokens, check_cells, check_features, check_frames, check_template, check_tokens,
                   checkpoint_folder, host, load_checkpoint, model_device, token_cells, torch_dtype)

# Qwen's chat format (the default system prompt its chat template adds); "<image>" marks where the
# adapter puts the visual tokens, between the vision start / end markers.
DEFAULT_TEMPLATE = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><image><|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n")

# config.json model_type -> the transformers class that runs it
MODEL_CLASSES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


def _positive_int(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{name}: {value!r} is not a positive int (or None)")
    return value


class Qwen2VLAdapter(VLMAdapter):
    """A Qwen2-VL or Qwen2.5-VL model from a local folder, seeing a frame through arrcoc_rt's tokens.

    Per frame: the checkpoint's own image processor resizes the whole frame (``smart_resize``: both
    sides multiples of patch x merge, pixels within the processor's min/max pixels, no crop) and
    the frozen vision tower runs once. Its output — after the 2x2 spatial merge, which in Qwen2-VL
    is also the projector into the language model — is the merged grid [D, h, w]. Each kept token
    (``tokens=N`` at most: gestalt first, then saccades best-first; padding dropped) becomes ONE
    visual token: the mean of that grid over its 2^level cells (``FrameResult.gather_features``,
    as for LLaVA), so N kept tokens are exactly N visual tokens.

    Positions: each visual token keeps the multimodal rotary position (t, h, w) of the merged-grid
    cell under its centre (the cell ``gather_features`` builds its pooled window around), taken
    from the model's own ``get_rope_index`` over the full, unpruned prompt; the text keeps its
    positions too, so nothing is renumbered. A level-0 token is therefore exactly the model's own
    token at its own place, and with every cell kept at level 0 the input is the stock one. Tokens
    sharing a cell share its position. Visual tokens go into the prompt in the grid's raster order
    (ties in pack order), as in the stock input, so positions never run backwards along the prompt.
    ``position_ids`` [3, 1, L] go to the model explicitly; ``rope_deltas`` (next position minus
    sequence length, as the model defines it) says where decoding continues; ``generate`` goes on
    from the last prompt position + 1, the same place when the template ends in text (Qwen's does).

    ``template`` holds ``{prompt}`` and one ``<image>`` placeholder (default: Qwen's chat format).

    Several frames (``prepare_frames``, oldest first, one size) are one video in Qwen's layout whose
    k temporal patches are the k frames: each frame fills its patch's ``temporal_patch_size`` (2)
    frames, as Qwen's processor does for a still image, so its tower output is exactly the frame's
    image output (the tower attends within one temporal patch). The placeholder becomes k x h x w
    video tokens; ``get_rope_index`` with ``video_grid_thw`` [[k, 2h, 2w]] gives the full video's
    positions, t = the frame's index in the window (Qwen2.5-VL: index x ``tokens_per_second`` x
    ``seconds_per_frame``, 1 s by default as when the processor gives no ``second_per_grid_ts``),
    and each frame's kept tokens take them at their cells, frames in time order, each in raster
    order. That is the stock model's input for that k-patch video, pruned. (Qwen's video processor
    would instead pair consecutive frames into one patch; one frame per patch keeps each frame's
    allocation its own.)

    ``prepare_features`` takes tokens chosen on the merged grid by something else (the
    experiment's pooling and pruning baselines) with each token's cell: the same positions.
    """

    name = "qwen2_vl"

    def __init__(self, model, tokenizer, image_processor, *, tokens: int | str | None = None,
                 template: str = DEFAULT_TEMPLATE, min_pixels: int | None = None, max_pixels: int | None = None):
        import torch

        check_template(template)
        check_tokens(tokens)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.tokens = tokens
        self.template = template
        cfg = model.config
        self.image_token_id = int(cfg.image_token_id)
        self.video_token_id = int(cfg.video_token_id)
        self.merge = int(cfg.vision_config.spatial_merge_size)
        # The processor's own pixel budget unless overridden, in its size keys (shortest_edge = min
        # pixels, longest_edge = max pixels); None: the processor's as saved.
        size = None
        if _positive_int("min_pixels", min_pixels) is not None or _positive_int("max_pixels", max_pixels) is not None:
            size = dict(image_processor.size)
            if min_pixels is not None:
                size["shortest_edge"] = int(min_pixels)
            if max_pixels is not None:
                size["longest_edge"] = int(max_pixels)
        if size is not None and size.get("shortest_edge") is not None and size.get("longest_edge") is not None \
                and size["shortest_edge"] > size["longest_edge"]:
            raise ValueError(f"min_pixels {size['shortest_edge']} is above max_pixels {size['longest_edge']}; "
                             "expected min_pixels <= max_pixels")
        self.size = size
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self._torch = torch

    @classmethod
    def load(cls, path, device: str = "cpu", dtype=None, *, tokens: int | str | None = None,
             template: str = DEFAULT_TEMPLATE, attn_implementation: str | None = None, min_pixels: int | None = None,
             max_pixels: int | None = None, model_type: str | None = None) -> "Qwen2VLAdapter":
        """A Qwen2-VL / Qwen2.5-VL checkpoint folder (model, tokenizer and image processor,
        ``from_pretrained(local_files_only=True)``). ``dtype`` None: bfloat16 on CUDA (the dtype
        Qwen's checkpoints ship in), float32 on the CPU. ``model_type`` ('qwen2_vl' or 'qwen2_5_vl')
        insists on that kind. Raises ValueError when the folder is missing or holds another model."""
        p = checkpoint_folder(path, "Qwen2-VL")
        device = model_device(device)
        import torch
        import transformers

        cfg_file = p / "config.json"
        if not cfg_file.exists():
            raise ValueError(f"vlm: {str(p)!r} has no config.json; expected a Qwen2-VL checkpoint folder")
        found = json.loads(cfg_file.read_text()).get("model_type")
        wanted = (model_type,) if model_type else tuple(MODEL_CLASSES)
        if found not in wanted:
            raise ValueError(f"vlm: {str(p)!r} holds a {found!r} model, not {' or '.join(map(repr, wanted))}")
        model_class = getattr(transformers, MODEL_CLASSES[found], None)
        if model_class is None:
            raise ValueError(f"vlm: this transformers ({transformers.__version__}) has no {MODEL_CLASSES[found]}")
        model, tokenizer, image_processor = load_checkpoint(
            p, model_class, "Qwen2-VL", torch_dtype(torch, dtype, device, torch.bfloat16), attn_implementation)
        return cls(model.to(device), tokenizer, image_processor, tokens=tokens, template=template,
                   min_pixels=min_pixels, max_pixels=max_pixels)

    # ------------------------------------------------------------------ vision
    def image_inputs(self, frame_rgb) -> dict:
        """The image processor's ``pixel_values`` (flattened patches) and ``image_grid_thw`` [1, 3]
        (patch grid, before the merge) for the whole frame, on the model's device."""
        a = host(frame_rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise TypeError(f"frame: expected H x W x 3 uint8 RGB; got {a.dtype} {a.shape}")
        kw = {"size": self.size} if self.size is not None else {}
        out = self.image_processor(images=[np.ascontiguousarray(a)], return_tensors="pt",
                                   input_data_format="channels_last", **kw)
        return {"pixel_values": out["pixel_values"].to(self.device, self.dtype),
                "image_grid_thw": out["image_grid_thw"].to(self.device)}

    def _merged_grid(self, image):
        """[D, h, w] float32: the vision tower's merged tokens (raster order) as a grid."""
        return self._merged_grids(image["pixel_values"], image["image_grid_thw"])[0]

    def _merged_grids(self, pixel_values, image_grid_thw):
        """A list of [D, h, w] float32 grids, one per image of ``image_grid_thw`` [n, 3], from one
        call of the vision tower."""
        with self._torch.no_grad():
            out = self.model.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        grids = []
        for feats, (_, gh, gw) in zip(out.pooler_output, image_grid_thw.tolist()):
            grids.append(feats.float().T.reshape(-1, gh // self.merge, gw // self.merge).contiguous())
        return grids

    def vision_features(self, frame_rgb):
        """[D, h, w] float32 torch tensor: the vision tower's output on its merged patch grid (after
        the 2x2 merge, which for Qwen2-VL is the projector: D is the language model's width)."""
        return self._merged_grid(self.image_inputs(frame_rgb))

    token_cells = staticmethod(token_cells)

    # ------------------------------------------------------------------ language
    def prepare(self, frame_rgb, result, prompt: str, *, tokens: int | str | None = None) -> dict:
        """Model inputs: ``inputs_embeds`` [1, L, D] with K visual tokens at the image-token places,
        ``attention_mask`` [1, L], ``position_ids`` [3, 1, L] (the full grid's, kept places only),
        ``rope_deltas`` [1, 1], ``input_ids`` [1, L] (for reference), ``num_visual_tokens`` K,
        ``token_index`` (pack index of each visual token, in prompt order), ``cells`` (its merged-grid
        cell) and ``image_grid_thw``. ``tokens`` overrides the adapter's knob."""
        out = self.prepare_frames([frame_rgb], [result], prompt, tokens=tokens)
        return dict(out, token_index=out["token_index"][0], cells=out["cells"][0])

    def prepare_frames(self, frames_rgb, results, prompt: str, *, tokens: int | str | None = None,
                       seconds_per_frame: float | None = None) -> dict:
        """Model inputs about k frames of one size, oldest first, each through its own result's tokens
        (``tokens`` per frame): one frame is ``prepare``'s image; more are one video with one temporal
        patch per frame (see the class docstring). ``prepare``'s keys, with ``token_index`` and
        ``cells`` lists of k arrays (prompt order), ``frame_tokens`` each frame's count and, for a
        video, ``video_grid_thw`` [1, 3] instead of ``image_grid_thw``. ``seconds_per_frame``: the
        time between frames for Qwen2.5-VL's temporal positions (None: 1 s per patch, the model's
        default; Qwen2-VL ignores it)."""
        torch = self._torch
        arrays, keeps = check_frames(frames_rgb, results, call_tokens(self.tokens, tokens))
        images = [self.image_inputs(a) for a in arrays]
        thw = images[0]["image_grid_thw"]
        if any(not torch.equal(im["image_grid_thw"], thw) for im in images[1:]):
            raise ValueError("frames: the frames of one window must have one size (one merged grid); got "
                             + ", ".join(f"{a.shape[1]}x{a.shape[0]}" for a in arrays))
        grids = self._merged_grids(torch.cat([im["pixel_values"] for im in images]), thw.repeat(len(images), 1))
        visuals, cells_list, keep_list = [], [], []
        for result, keep, grid in zip(results, keeps, grids):
            h, w = grid.shape[1:]
            cells = self.token_cells(result, keep, h, w)
            order = np.argsort(cells, kind="stable")  # raster order; ties keep the pack's order
            keep, cells = keep[order], cells[order]
            feats = self._gather(result, grid)                                    # [N, D]
            visuals.append(feats[torch.from_numpy(keep.astype(np.int64)).to(self.device)])
            cells_list.append(cells)
            keep_list.append(keep)
        out = self._language_inputs(visuals, cells_list, thw, prompt, seconds_per_frame=seconds_per_frame)
        return dict(out, token_index=keep_list)

    def prepare_features(self, features, prompt: str, *, positions=None, grid=None) -> dict:
        """Model inputs with exactly the N visual tokens ``features`` [N, D] (merged-grid space, as
        ``vision_features``' channels: cells or means of cells), each at the rotary position the full
        image gives the merged-grid cell under its ``positions`` [N, 2] (x, y in cells; cell (i, j)
        has its centre at (j + 0.5, i + 0.5)) on a merged grid of ``grid`` = (h, w): the cell
        (floor(y), floor(x)). A token pooled over a block of cells (given the block's centre) takes
        the centre cell's position — for a block of even side, whose centre is a cell corner, the
        cell below and right of it, as a pack token does. The tokens go into the prompt in raster
        order of their cells (ties in the given order): ``feature_index`` is that order, ``cells``
        the cells; otherwise ``prepare``'s keys."""
        torch = self._torch
        if positions is None or grid is None:
            raise ValueError("Qwen2-VL's visual tokens carry 2-D positions: prepare_features needs positions "
                             "[N, 2] (x, y in cells) and grid (h, w) of the merged grid")
        f = check_features(torch, features)
        width = self.model.config.text_config.hidden_size
        if f.shape[1] != width:
            raise ValueError(f"features: expected [N, {width}] with N >= 1 (the merged grid's channels); got shape "
                             f"{tuple(f.shape)}")
        pos, h, w = check_cells(positions, f.shape[0], grid)
        cj = np.clip(np.floor(pos[:, 0]), 0, w - 1).astype(np.int64)
        ci = np.clip(np.floor(pos[:, 1]), 0, h - 1).astype(np.int64)
        cells = ci * w + cj
        order = np.argsort(cells, kind="stable")
        thw = torch.tensor([[1, h * self.merge, w * self.merge]], dtype=torch.long, device=self.device)
        visual = f[torch.from_numpy(order).to(f.device)].to(self.device)
        out = self._language_inputs([visual], [cells[order]], thw, prompt)
        return dict(out, feature_index=order, cells=cells[order])

    def _language_inputs(self, visuals, cells_list, image_grid_thw, prompt: str, *,
                         seconds_per_frame: float | None = None) -> dict:
        """``prepare``'s keys but ``token_index``: for each frame (oldest first), visual tokens
        ``visuals[i]`` [K_i, D] (language-model space) at merged-grid cells ``cells_list[i]`` [K_i]
        (raster index, in prompt order) of a frame ``image_grid_thw`` [1, 3] describes. One frame:
        an image; several: one video with a temporal patch per frame."""
        torch = self._torch
        k = len(visuals)
        _, gh, gw = (int(v) for v in image_grid_thw[0])
        h, w = gh // self.merge, gw // self.merge
        n = h * w
        head, tail = self._prompt_parts(prompt)
        video = k > 1
        token = self.video_token_id if video else self.image_token_id
        full_ids = torch.tensor([head + [token] * (k * n) + tail], dtype=torch.long, device=self.device)
        mm_types = (full_ids == token).int() * (2 if video else 1)  # text 0, image 1, video 2
        if video:
            grid_kw = {"video_grid_thw": torch.tensor([[k, gh, gw]], dtype=torch.long, device=self.device)}
            if seconds_per_frame is not None:
                grid_kw["second_per_grid_ts"] = torch.tensor([float(seconds_per_frame)], device=self.device)
        else:
            grid_kw = {"image_grid_thw": image_grid_thw}
        full_positions, full_deltas = self.model.model.get_rope_index(
            full_ids, mm_token_type_ids=mm_types, attention_mask=torch.ones_like(full_ids), **grid_kw)
        n_head = len(head)
        columns = np.concatenate([np.arange(n_head)] + [n_head + i * n + np.asarray(c, np.int64)
                                                         for i, c in enumerate(cells_list)]
                                 + [n_head + k * n + np.arange(len(tail))])
        columns = torch.from_numpy(columns).to(self.device)
        input_ids = full_ids[:, columns]
        position_ids = full_positions[:, :, columns]
        # Decoding goes on where the full prompt's would: next position = length + delta for both.
        rope_deltas = full_deltas + (full_ids.shape[1] - input_ids.shape[1])
        visual = torch.cat([v.to(self.device) for v in visuals])
        with torch.no_grad():
            embeds = self.model.get_input_embeddings()(input_ids)
            mask = (input_ids == token)[..., None].expand_as(embeds)
            embeds = embeds.masked_scatter(mask, visual.to(embeds.dtype))
        counts = [int(len(c)) for c in cells_list]
        out = {"inputs_embeds": embeds, "attention_mask": torch.ones_like(input_ids), "position_ids": position_ids,
               "rope_deltas": rope_deltas, "input_ids": input_ids, "num_visual_tokens": sum(counts),
               "frame_tokens": counts, "cells": list(cells_list)}
        if video:
            out["video_grid_thw"] = grid_kw["video_grid_thw"]
        else:
            out["image_grid_thw"] = image_grid_thw
        return out

    def _prompt_parts(self, prompt: str) -> tuple[list, list]:
        """Token ids of the template before and after the image placeholder, around ``prompt``."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt: expected a str; got {type(prompt).__name__}")
        before, after = self.template.split("<image>")
        head = list(self.tokenizer(before.replace("{prompt}", prompt))["input_ids"])
        tail = list(self.tokenizer(after.replace("{prompt}", prompt), add_special_tokens=False)["input_ids"])
        if any(t in ids for t in (self.image_token_id, self.video_token_id) for ids in (head, tail)):
            raise ValueError("prompt: it contains the image token; the adapter places the image tokens itself")
        return head, tail

    def logits(self, inputs: dict):
        """[1, L, vocab] float32 logits of one forward pass over ``prepare``'s inputs."""
        with self._torch.no_grad():
            out = self.model(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
                             position_ids=inputs["position_ids"])
        return out.logits.float()

    def generate_ids(self, inputs: dict, max_new_tokens: int = 16, **kw):
        """[1, n] new token ids; greedy unless ``do_sample=True`` is passed. The explicit positions go
        to ``generate``, which continues each new token at the last position + 1 (= length +
        ``rope_deltas``), as the stock model does."""
        kw.setdefault("do_sample", False)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if pad is not None:
            kw.setdefault("pad_token_id", pad)
        with self._torch.no_grad():
            # With inputs_embeds only, generate returns just the new tokens.
            return self.model.generate(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
                                       position_ids=inputs["position_ids"], max_new_tokens=int(max_new_tokens), **kw)

    def generate(self, inputs: dict, max_new_tokens: int = 16, **kw) -> str:
        """The new text (special tokens skipped); greedy unless ``do_sample=True`` is passed."""
        return self.tokenizer.decode(self.generate_ids(inputs, max_new_tokens, **kw)[0], skip_special_tokens=True)
