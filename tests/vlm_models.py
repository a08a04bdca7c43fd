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
