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
