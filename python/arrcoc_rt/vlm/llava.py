"""LLaVA-1.5 (transformers' LlavaForConditionalGeneration, unmodified) fed with arrcoc_rt tokens."""

from __future__ import annotations

import json

import numpy as np

from .base import (VLMAdapter, call_tokens, check_features, check_frames, check_model_type, check_template,
                   check_tokens, checkpoint_folder, host, load_checkpoint, model_device, torch_dtype)

_CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
DEFAULT_TEMPLATE = "USER: <image>\n{prompt} ASSISTANT:"


class LlavaAdapter(VLMAdapter):
    """A LLaVA-1.5-layout model from a local folder, seeing a frame through arrcoc_rt's tokens.

    Per frame: the whole frame is resized (bicubic, no crop) to the vision tower's square input and
    normalised with the checkpoint's image mean/std (``preprocessor_config.json``; CLIP's
    otherwise). The frozen vision tower runs once; its ``vision_feature_layer`` output, without the
    class token, is the model's patch grid [C, g, g]. Each kept token (gestalt first, then saccades
    best-first; padding dropped) gets the mean of that grid over its 2^level cells
    (``FrameResult.gather_features``); the model's own ``multi_modal_projector`` maps them into the
    language model, where they replace as many ``<image>`` tokens in the prompt.

    Differences from the stock LLaVA-1.5 processor, on purpose: the frame is squashed, not
    centre-cropped, so the grid covers the whole frame the allocation was made on; and the model
    sees the kept tokens (``tokens=N`` at most), not all g*g patches.

    ``template`` holds ``{prompt}`` and one ``<image>`` placeholder (default
    ``"USER: <image>\\n{prompt} ASSISTANT:"``, LLaVA-1.5's).

    Several frames (``prepare_frames``, oldest first) are several images of one prompt, as LLaVA's
    processor and model take them: the placeholder becomes k image-token blocks, one per frame, with
    ``frame_separator`` between them (default ``"\\n"``: llava-hf's chat template writes each image as
    ``"<image>\\n"``), so the default template reads ``"USER: <image>\\n<image>\\n{prompt} ASSISTANT:"``
    for two frames. The vision tower runs once on the k frames together.
    """

    name = "llava"

    def __init__(self, model, tokenizer, *, mean=_CLIP_NORM[0], std=_CLIP_NORM[1], tokens: int | None = None,
                 template: str = DEFAULT_TEMPLATE, frame_separator: str = "\n"):
        import torch

        check_template(template)
        check_tokens(tokens)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.template = template
        if not isinstance(frame_separator, str):
            raise TypeError(f"frame_separator: expected a str; got {type(frame_separator).__name__}")
        self.frame_separator = frame_separator
        cfg = model.config
        self.image_token_id = int(cfg.image_token_id)
        self.feature_layer = cfg.vision_feature_layer
        self.select_strategy = cfg.vision_feature_select_strategy
        vc = cfg.vision_config
        self.image_size, self.patch = int(vc.image_size), int(vc.patch_size)
        self.grid = self.image_size // self.patch
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._torch = torch

    @classmethod
    def load(cls, path, device: str = "cpu", dtype=None, *, tokens: int | None = None,
             template: str = DEFAULT_TEMPLATE, attn_implementation: str | None = None,
             frame_separator: str = "\n") -> "LlavaAdapter":
        """A LLaVA checkpoint folder (model + tokenizer, ``from_pretrained(local_files_only=True)``).
        ``dtype`` None: float16 on CUDA, float32 on the CPU. Raises ValueError when the folder is
        missing or does not hold a LLaVA model."""
        p = checkpoint_folder(path, "LLaVA")
        device = model_device(device)
        import torch
        from transformers import LlavaForConditionalGeneration

        check_model_type(p, "llava")
        model, tokenizer, _ = load_checkpoint(p, LlavaForConditionalGeneration, "LLaVA",
                                              torch_dtype(torch, dtype, device, torch.float16), attn_implementation,
                                              image_processor=False)
        mean, std = _CLIP_NORM
        pp = p / "preprocessor_config.json"
        if pp.exists():
            c = json.loads(pp.read_text())
            mean, std = c.get("image_mean", mean), c.get("image_std", std)
        return cls(model.to(device), tokenizer, mean=mean, std=std, tokens=tokens, template=template,
                   frame_separator=frame_separator)

    # ------------------------------------------------------------------ vision
    def pixel_values(self, frame_rgb):
        """[1, 3, S, S] normalised pixels: the whole frame resized to the tower's input size."""
        from PIL import Image

        a = host(frame_rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise TypeError(f"frame: expected H x W x 3 uint8 RGB; got {a.dtype} {a.shape}")
        im = Image.fromarray(np.ascontiguousarray(a)).resize((self.image_size, self.image_size), Image.BICUBIC)
        t = self._torch.from_numpy(np.asarray(im).copy()).to(self.device).permute(2, 0, 1)[None].float()
        return ((t / 255.0 - self._mean) / self._std).to(self.dtype)

    def vision_features(self, frame_rgb):
        """[C, g, g] float32 torch tensor: the vision tower's selected layer(s) on its patch grid,
        without the class token (the grid has no cell for it), before the projector."""
        return self._grids(self.pixel_values(frame_rgb))[0]

    def _grids(self, pixel_values):
        """[B, C, g, g] float32: the tower's grids of a batch of [B, 3, S, S] pixels."""
        torch = self._torch
        with torch.no_grad():
            out = self.model.model.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
            layers = [self.feature_layer] if isinstance(self.feature_layer, int) else list(self.feature_layer)
            # The same layer selection as LlavaModel.get_image_features; the last g*g tokens are the grid
            # whether or not the strategy keeps the class token.
            g = self.grid
            hs = torch.cat([out.hidden_states[i][:, -g * g:] for i in layers], dim=-1)
        return hs.float().transpose(1, 2).reshape(hs.shape[0], -1, g, g).contiguous()

    # ------------------------------------------------------------------ language
    def prepare(self, frame_rgb, result, prompt: str, *, tokens: int | str | None = None) -> dict:
        """Model inputs: ``inputs_embeds`` [1, L, D] with the projected visual tokens at the image-token
        positions, ``attention_mask`` [1, L], ``input_ids`` [1, L] (the prompt with K image tokens,
        for reference) and ``num_visual_tokens`` K. ``tokens`` overrides the adapter's knob."""
        out = self.prepare_frames([frame_rgb], [result], prompt, tokens=tokens)
        return dict(out, token_index=out["token_index"][0])

    def prepare_frames(self, frames_rgb, results, prompt: str, *, tokens: int | str | None = None) -> dict:
        """Model inputs about k frames, oldest first, each through its own result's tokens (``tokens``
        per frame): one prompt with k image-token blocks in time order (see the class docstring).
        ``prepare``'s keys, with ``token_index`` a list of k arrays and ``frame_tokens`` the count of
        each block; ``num_visual_tokens`` is their sum."""
        torch = self._torch
        arrays, keeps = check_frames(frames_rgb, results, call_tokens(self.tokens, tokens))
        grids = self._grids(torch.cat([self.pixel_values(a) for a in arrays]))            # [k, C, g, g]
        blocks = []
        for result, keep, grid in zip(results, keeps, grids):
            feats = self._gather(result, grid)                                             # [N, C]
            blocks.append(feats[torch.from_numpy(keep.astype(np.int64)).to(self.device)])
        return dict(self._embed(blocks, prompt), token_index=keeps)

    def prepare_features(self, features, prompt: str, *, positions=None, grid=None) -> dict:
        """Model inputs with exactly the N visual tokens ``features`` [N, C] (vision-tower space, e.g.
        cells of ``vision_features``' grid or means of cells), in this order, through the model's
        projector: the keys of ``prepare`` but ``token_index``. LLaVA-1.5's image tokens carry no 2-D
        positions (the language model sees them in sequence), so ``positions`` and ``grid`` are not used."""
        return self._embed([features], prompt)

    def _embed(self, blocks, prompt: str) -> dict:
        """Inputs with one image-token block per [N_i, C] feature block, in order, projected."""
        torch = self._torch
        fs = []
        for f in blocks:
            fs.append(check_features(torch, f).to(self.device, self.dtype))
        counts = [int(f.shape[0]) for f in fs]
        visual = self._project(torch.cat(fs))                                            # [sum N_i, D]
        return self._scatter(list(visual.split(counts)), prompt)

    def _project(self, features):
        """[N, D]: the model's projector applied to [N, C] vision-tower features."""
        first = getattr(self.model.model.multi_modal_projector, "linear_1", None)
        width = getattr(first, "in_features", None)
        if width is not None and features.shape[-1] != width:
            raise ValueError(f"features: expected [N, {width}] (the vision tower's channels at the selected "
                             f"layer(s)); got shape {tuple(features.shape)}")
        with self._torch.no_grad():
            return self.model.model.multi_modal_projector(features.to(self.device, self.dtype)[None])[0]

    def _scatter(self, blocks, prompt: str) -> dict:
        """Inputs whose image-token blocks (one per entry, in order) hold the language-model-space
        embeddings ``blocks[i]`` [L_i, D]."""
        torch = self._torch
        counts = [int(b.shape[0]) for b in blocks]
        input_ids = self._prompt_ids(prompt, counts)
        with torch.no_grad():
            embeds = self.model.get_input_embeddings()(input_ids)
            mask = (input_ids == self.image_token_id)[..., None].expand_as(embeds)
            embeds = embeds.masked_scatter(mask, torch.cat(blocks).to(embeds.dtype))
        return {"inputs_embeds": embeds, "attention_mask": torch.ones_like(input_ids), "input_ids": input_ids,
                "num_visual_tokens": sum(counts), "frame_tokens": counts}

    def _prompt_ids(self, prompt: str, counts):
        """[1, L] ids: the template around ``prompt`` with the placeholder expanded to ``counts`` image
        tokens (an int; or a list: one block per frame, ``frame_separator`` between blocks)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt: expected a str; got {type(prompt).__name__}")
        counts = [int(counts)] if isinstance(counts, (int, np.integer)) else [int(c) for c in counts]
        before, after = self.template.split("<image>")
        head = self.tokenizer(before.replace("{prompt}", prompt), add_special_tokens=True)["input_ids"]
        tail = self.tokenizer(after.replace("{prompt}", prompt), add_special_tokens=False)["input_ids"]
        sep = self.tokenizer(self.frame_separator, add_special_tokens=False)["input_ids"] if len(counts) > 1 else []
        if self.image_token_id in head or self.image_token_id in tail or self.image_token_id in sep:
            raise ValueError("prompt: it contains the image token; the adapter places the image tokens itself")
        ids = list(head)
        for i, k in enumerate(counts):
            ids += (list(sep) if i else []) + [self.image_token_id] * k
        ids += list(tail)
        return self._torch.tensor([ids], dtype=self._torch.long, device=self.device)

    def logits(self, inputs: dict):
        """[1, L, vocab] float32 logits of one forward pass over ``prepare``'s inputs."""
        with self._torch.no_grad():
            out = self.model(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"])
        return out.logits.float()

    def generate(self, inputs: dict, max_new_tokens: int = 16, **kw) -> str:
        """The new text (special tokens skipped); greedy unless ``do_sample=True`` is passed."""
        kw.setdefault("do_sample", False)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if pad is not None:
            kw.setdefault("pad_token_id", pad)
        with self._torch.no_grad():
            ids = self.model.generate(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
                                      max_new_tokens=int(max_new_tokens), **kw)
        # With inputs_embeds only, generate returns just the new tokens.
        return self.tokenizer.decode(ids[0], skip_special_tokens=True)
