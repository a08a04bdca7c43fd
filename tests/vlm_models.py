"""Tiny random vision-language models for the tests, built from a config and saved with an offline
tokenizer, so the real loading code runs and nothing is downloaded (needs torch, transformers and
tokenizers; callers importorskip them first)."""

WORDS = ["USER:", "ASSISTANT:", "what", "is", "here", "?", "a", "red", "square", "the", "on", "left"]


def build_tiny_llava(path, *, image_size: int = 56, patch_size: int = 14, words=WORDS, seed: int = 0):
    """A LLaVA-1.5-layout model (CLIP vision tower of width 32, Llama of width 32, vocabulary 300,
    image token 299) with a WordLevel tokenizer over ``words``, saved to ``path``; its patch grid is
    (image_size / patch_size)^2. Returns ``path``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              PreTrainedTokenizerFast)

    torch.manual_seed(seed)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=image_size, patch_size=patch_size),
        text_config=LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, vocab_size=300, max_position_embeddings=512,
                                bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_id=299, vision_feature_layer=-2, vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(path)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}, "<image>": 299}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    fast.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- LLaVA-NeXT

NEXT_PINPOINTS = [[56, 112], [112, 56], [112, 112]]  # (height, width): 1 x 2, 2 x 1 and 2 x 2 tiles of 56


def build_tiny_llava_next(path, *, words=WORDS, seed: int = 0):
    """A LLaVA-NeXT model (CLIP tower of width 32 on 56 px tiles of 14 px patches: a 4 x 4 grid per
    tile; Llama of width 32, vocabulary 300, image token 299; tiles NEXT_PINPOINTS) with the
    WordLevel tokenizer of build_tiny_llava and LLaVA-NeXT's image processor, saved to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessorPil, PreTrainedTokenizerFast)

    torch.manual_seed(seed)
    cfg = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=56, patch_size=14),
        text_config=LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, vocab_size=300, max_position_embeddings=512,
                                bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_id=299, vision_feature_layer=-2, vision_feature_select_strategy="default",
        image_grid_pinpoints=NEXT_PINPOINTS)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # a newline that differs from the image tokens' scale, so its place matters
        model.model.image_newline.normal_(0.0, 1.0)
    model.save_pretrained(path)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}, "<image>": 299}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(path)
    LlavaNextImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56},
                               image_grid_pinpoints=NEXT_PINPOINTS).save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
QWEN_WORDS = ["system", "user", "assistant", "You", "are", "a", "helpful", "assistant.", "what", "is", "here", "?",
              "red", "square", "the", "on", "left"]
QWEN_VOCAB = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(SPECIAL + QWEN_WORDS)}}
# The processor's pixel budget for the tiny models: a 128 x 96 frame becomes 140 x 84 pixels,
# 10 x 6 patches of 14 px, a 5 x 3 merged grid.
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 15


def build_tiny_qwen(path, kind: str = "qwen2_vl"):
    """A Qwen2-VL (``kind`` 'qwen2_vl') or Qwen2.5-VL ('qwen2_5_vl', with window attention) model of
    width 32 with a WordLevel tokenizer over QWEN_VOCAB and Qwen's image processor (pixel budget
    MIN_PIXELS..MAX_PIXELS), saved to ``path``. Returns ``path``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessorPil

    torch.manual_seed(0 if kind == "qwen2_vl" else 1)
    text = dict(vocab_size=len(QWEN_VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                initializer_range=0.3,  # sharp enough attention that wrong positions change the logits
                # head_dim 16: 8 rotary frequencies split over (t, h, w)
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                bos_token_id=QWEN_VOCAB["<|endoftext|>"], eos_token_id=QWEN_VOCAB["<|im_end|>"],
                pad_token_id=QWEN_VOCAB["<|endoftext|>"])
    ids = dict(image_token_id=QWEN_VOCAB["<|image_pad|>"], video_token_id=QWEN_VOCAB["<|video_pad|>"],
               vision_start_token_id=QWEN_VOCAB["<|vision_start|>"], vision_end_token_id=QWEN_VOCAB["<|vision_end|>"])
    merge = dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    if kind == "qwen2_vl":
        cfg = transformers.Qwen2VLConfig(
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, **merge),
            text_config=text, **ids)
        model = transformers.Qwen2VLForConditionalGeneration(cfg)
    else:  # window attention over 2 x 2 merged cells, then one full-attention block
        cfg = transformers.Qwen2_5_VLConfig(
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               window_size=56, fullatt_block_indexes=[1], **merge),
            text_config=text, **ids)
        model = transformers.Qwen2_5_VLForConditionalGeneration(cfg)
    model.eval().save_pretrained(path)
    tok = Tokenizer(models.WordLevel(QWEN_VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
                            additional_special_tokens=SPECIAL).save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS).save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- a frozen model that reads a region

COLOUR_WORDS = ["USER:", "ASSISTANT:", "what", "colour", "is", "the", "square", "?", "red", "green", "blue", "yellow"]


def fit_colour_reader(path, examples, *, steps: int = 300, batch: int = 16, lr: float = 3e-3, seed: int = 0,
                      verbose: bool = False):
    """Fits the tiny LLaVA at ``path`` (built with COLOUR_WORDS) so that it answers
    arrcoc_rt.learning.colour_task's question from the visual tokens it is given, then saves it: its
    projector and language model learn (the vision tower stays as built) on packs like the pipeline's
    (four whole-grid gestalt tokens and three windows of 1 or 2x2 cells; the square's window is one of
    them half of the time), so its answer loss is low only when a token covers the square."""
    import numpy as np
    import torch

    from arrcoc_rt import reference as R
    from arrcoc_rt.vlm import make_adapter

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    adapter = make_adapter(f"llava:{path}", device="cpu")
    model = adapter.model
    grids = [adapter.vision_features(e.frame).numpy() for e in examples]
    answers = [adapter.tokenizer(" " + e.answer, add_special_tokens=False)["input_ids"][0] for e in examples]
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    ids = adapter._prompt_ids(examples[0].question, 7)  # 4 gestalt tokens and 3 windows, as packed
    image = (ids == adapter.image_token_id)[..., None]
    for _ in range(steps):
        opt.zero_grad()
        feats, labels = [], []
        for i in rng.choice(len(examples), size=batch):
            e = examples[i]
            h, w = e.frame.shape[:2]
            x0, y0, x1, y1 = e.box
            pos = [(w * (k + 0.5) / 2, h * (j + 0.5) / 2) for j in range(2) for k in range(2)]
            lev = [3] * 4
            target = rng.random() < 0.5
            for s in range(3):
                if target and s == int(rng.integers(3)):
                    pos.append(((x0 + x1) / 2 + rng.uniform(-4, 4), (y0 + y1) / 2 + rng.uniform(-4, 4)))
                else:
                    pos.append((rng.uniform(0, w), rng.uniform(0, h)))
                lev.append(int(rng.integers(0, 2)))
            feats.append(torch.from_numpy(R.gather_features(grids[i], np.array(pos), np.array(lev), w, h)).float())
            labels.append(answers[i])
        visual = model.model.multi_modal_projector(torch.stack(feats))           # [B, 7, D]
        embeds = model.get_input_embeddings()(ids).expand(batch, -1, -1)
        embeds = embeds.masked_scatter(image.expand(batch, -1, embeds.shape[-1]), visual)
        logits = model(inputs_embeds=embeds, attention_mask=torch.ones(batch, ids.shape[1], dtype=torch.long)).logits
        loss = torch.nn.functional.cross_entropy(logits[:, -1], torch.tensor(labels))
        loss.backward()
        opt.step()
        if verbose and _ % 100 == 0:
            print("fit", _, float(loss.detach()))
    model.eval()
    model.save_pretrained(path)
    return path
