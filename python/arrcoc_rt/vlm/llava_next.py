"""LLaVA-NeXT / LLaVA-1.6 (transformers' LlavaNextForConditionalGeneration, unmodified) fed with
arrcoc_rt tokens."""

from __future__ import annotations


import numpy as np

from .base import (call_tokens, check_cells, check_features, check_frames, check_model_type, checkpoint_folder, host,
                   load_checkpoint, model_device, token_cells, torch_dtype)
from .llava import DEFAULT_TEMPLATE, LlavaAdapter


class LlavaNextAdapter(LlavaAdapter):
    """A LLaVA-NeXT checkpoint from a local folder, seeing a frame through arrcoc_rt's tokens.

    LLaVA-NeXT sees an image twice: a *base* view (the whole image squashed to the tower's S x S
    input, a g x g grid) and a *high-resolution* view (the image resized into the best of the
    checkpoint's ``image_grid_pinpoints``, padded, cut into S x S tiles; the tiles' grids stitched
    and the padding cut off again by the model's own ``unpad_image``: an H x W grid over the image).
    The stock model's image tokens are the base grid in raster order, then the high-resolution grid
    row by row, each row closed by the learned ``image_newline`` embedding.

    The adapter keeps that layout and deletes what is not kept. The checkpoint's own image processor
    makes the tiles and the tower runs once on all of them (per frame), at ``vision_feature_layer``,
    class token dropped. The pack's **gestalt tokens** (the overview) are read from the **base grid**
    and stand in the base's place, in pack order; its **saccades** (the details) are read from the
    **high-resolution grid** and stand in its place, in raster order of the cell under each centre
    (ties in pack order), and each row of that grid holding any kept saccade is closed by
    ``image_newline`` (rows with none are dropped whole, newline included). Each token is the mean of
    its grid over its 2^level cells (``FrameResult.gather_features``, as for LLaVA-1.5) through the
    model's own projector. With every cell of both grids kept at level 0 the input is exactly the
    stock one. ``tokens=N`` keeps N visual tokens (gestalt first, then the best saccades); the
    newlines come on top (``num_newline_tokens``, at most the kept saccades' rows).

    ``vision_features`` is the high-resolution grid [C, H, W]; ``prepare_features`` feeds tokens
    chosen on it (the experiment's baselines) the same way: raster order, kept rows closed by
    ``image_newline``, no base view. Several frames are several images of one prompt, one block
    each, ``frame_separator`` between (as LLaVA-1.5's). ``template``: the checkpoint's chat format
    around one ``<image>`` (default LLaVA-1.5's, which the Vicuna-based 1.6 checkpoints use; Mistral-
    based ones want ``"[INST] <image>\\n{prompt} [/INST]"``).
    """

    name = "llava_next"

    def __init__(self, model, tokenizer, image_processor, *, tokens: int | None = None,
                 template: str = DEFAULT_TEMPLATE, frame_separator: str = "\n"):
        super().__init__(model, tokenizer, tokens=tokens, template=template, frame_separator=frame_separator)
        self.image_processor = image_processor
        self.pinpoints = [list(p) for p in model.config.image_grid_pinpoints]
        self.image_newline = model.model.image_newline

    @classmethod
    def load(cls, path, device: str = "cpu", dtype=None, *, tokens: int | None = None,
             template: str = DEFAULT_TEMPLATE, attn_implementation: str | None = None,
             frame_separator: str = "\n") -> "LlavaNextAdapter":
        """A LLaVA-NeXT checkpoint folder (model, tokenizer and image processor,
        ``from_pretrained(local_files_only=True)``). ``dtype`` None: float16 on CUDA, float32 on the
        CPU. Raises ValueError when the folder is missing or does not hold a LLaVA-NeXT model."""
        p = checkpoint_folder(path, "LLaVA-NeXT")
        device = model_device(device)
        import torch
        from transformers import LlavaNextForConditionalGeneration

        check_model_type(p, "llava_next")
        model, tokenizer, image_processor = load_checkpoint(
            p, LlavaNextForConditionalGeneration, "LLaVA-NeXT", torch_dtype(torch, dtype, device, torch.float16),
            attn_implementation)
        return cls(model.to(device), tokenizer, image_processor, tokens=tokens, template=template,
                   frame_separator=frame_separator)

    # ------------------------------------------------------------------ vision
    def image_inputs(self, frame_rgb) -> dict:
        """The image processor's ``pixel_values`` [1, P, 3, S, S] (the base view, then the tiles) and
        ``image_sizes`` [1, 2] (height, width) for the whole frame."""
        a = host(frame_rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise TypeError(f"frame: expected H x W x 3 uint8 RGB; got {a.dtype} {a.shape}")
        out = self.image_processor(images=[np.ascontiguousarray(a)], return_tensors="pt",
                                   input_data_format="channels_last")
        return {"pixel_values": out["pixel_values"].to(self.device, self.dtype), "image_sizes": out["image_sizes"]}

    def _views(self, images: list) -> list:
        """[(base [C, g, g], high-resolution [C, H, W])] per image of ``image_inputs``, float32, from
        one run of the tower over every tile."""
        from transformers.models.llava_next.modeling_llava_next import (get_anyres_image_grid_shape,
                                                                         image_size_to_num_patches, unpad_image)

        torch = self._torch
        sizes = [[int(v) for v in im["image_sizes"][0]] for im in images]
        counts = [image_size_to_num_patches(s, self.pinpoints, self.image_size) for s in sizes]
        tiles = self._grids(torch.cat([im["pixel_values"][0, :n] for im, n in zip(images, counts)]))
        out = []
        for t, size in zip(tiles.split(counts), sizes):
            c, g = t.shape[1], self.grid
            nph, npw = get_anyres_image_grid_shape(size, self.pinpoints, self.image_size)
            # The stitching of LlavaNextModel.pack_image_features, on the features before the projector.
            hires = t[1:].reshape(nph, npw, c, g, g).permute(2, 0, 3, 1, 4).reshape(c, nph * g, npw * g)
            out.append((t[0], unpad_image(hires, size).contiguous()))
        return out

    def vision_features(self, frame_rgb):
        """[C, H, W] float32: the high-resolution grid over the frame (the tiles' grids stitched and
        unpadded), the tower's selected layer before the projector."""
        return self._views([self.image_inputs(frame_rgb)])[0][1]

    def base_features(self, frame_rgb):
        """[C, g, g] float32: the base view's grid (the whole frame at S x S)."""
        return self._views([self.image_inputs(frame_rgb)])[0][0]

    # ------------------------------------------------------------------ language
    def _rows(self, visual, cells: np.ndarray, w: int):
        """[K + R, D]: ``visual`` [K, D] (raster order of ``cells`` on a grid w wide) with
        ``image_newline`` after the last token of each of the R rows it touches."""
        torch = self._torch
        rows = np.asarray(cells) // w
        parts, start = [], 0
        newline = self.image_newline.to(visual.device, visual.dtype)[None]
        for end in list(np.flatnonzero(np.diff(rows)) + 1) + [len(rows)]:
            if end > start:
                parts += [visual[start:end], newline]
            start = end
        return torch.cat(parts) if parts else visual[:0], len(parts) // 2

    def prepare_frames(self, frames_rgb, results, prompt: str, *, tokens: int | str | None = None) -> dict:
        """Model inputs about k frames, oldest first (one image block each; see the class docstring):
        ``inputs_embeds``, ``attention_mask``, ``input_ids`` (image tokens: visual + newline),
        ``num_visual_tokens`` (the kept tokens, newlines not counted), ``num_newline_tokens``,
        ``frame_tokens`` (visual tokens per frame), ``token_index`` (per frame: the gestalt tokens in
        pack order, then the saccades in prompt order) and ``cells`` (per frame: each saccade's cell
        on the high-resolution grid, raster index)."""
        torch = self._torch
        arrays, keeps = check_frames(frames_rgb, results, call_tokens(self.tokens, tokens))
        views = self._views([self.image_inputs(a) for a in arrays])
        blocks, index, cells_list, counts, newlines = [], [], [], [], 0
        for result, keep, (base, hires) in zip(results, keeps, views):
            kinds = host(result.kinds)[keep]
            gestalt, saccades = keep[kinds == 0], keep[kinds != 0]
            h, w = hires.shape[1:]
            cells = token_cells(result, saccades, h, w)
            order = np.argsort(cells, kind="stable")
            saccades, cells = saccades[order], cells[order]
            parts = []
            if len(gestalt):
                g = self._gather(result, base)[torch.from_numpy(gestalt.astype(np.int64)).to(self.device)]
                parts.append(self._project(g))
            if len(saccades):
                s = self._gather(result, hires)[torch.from_numpy(saccades.astype(np.int64)).to(self.device)]
                block, n_rows = self._rows(self._project(s), cells, w)
                parts.append(block)
                newlines += n_rows
            blocks.append(torch.cat(parts))
            index.append(np.concatenate([gestalt, saccades]))
            cells_list.append(cells)
            counts.append(len(keep))
        out = self._scatter(blocks, prompt)
        return dict(out, num_visual_tokens=sum(counts), num_newline_tokens=newlines, frame_tokens=counts,
                    token_index=index, cells=cells_list)

    def prepare(self, frame_rgb, result, prompt: str, *, tokens: int | str | None = None) -> dict:
        """``prepare_frames`` for one frame, with ``token_index`` and ``cells`` the frame's arrays."""
        out = self.prepare_frames([frame_rgb], [result], prompt, tokens=tokens)
        return dict(out, token_index=out["token_index"][0], cells=out["cells"][0])

    def prepare_features(self, features, prompt: str, *, positions=None, grid=None) -> dict:
        """Model inputs with exactly the N visual tokens ``features`` [N, C] chosen on the
        high-resolution grid (``vision_features``' channels), each placed at the cell under its
        ``positions`` [N, 2] (x, y in cells) on a grid of ``grid`` = (H, W): raster order (ties in the
        given order; ``feature_index``), each row holding a token closed by ``image_newline``, no
        base view. ``num_visual_tokens`` N; ``num_newline_tokens`` the rows."""
        torch = self._torch
        if positions is None or grid is None:
            raise ValueError("LLaVA-NeXT closes each row of its high-resolution grid with a newline token: "
                             "prepare_features needs positions [N, 2] (x, y in cells) and grid (H, W)")
        f = check_features(torch, features)
        pos, h, w = check_cells(positions, f.shape[0], grid)
        cells = (np.clip(np.floor(pos[:, 1]), 0, h - 1).astype(np.int64) * w
                 + np.clip(np.floor(pos[:, 0]), 0, w - 1).astype(np.int64))
        order = np.argsort(cells, kind="stable")
        block, n_rows = self._rows(self._project(f[torch.from_numpy(order).to(f.device)]), cells[order], w)
        out = self._scatter([block], prompt)
        return dict(out, num_visual_tokens=int(f.shape[0]), num_newline_tokens=n_rows, frame_tokens=[int(f.shape[0])],
                    feature_index=order, cells=cells[order])
