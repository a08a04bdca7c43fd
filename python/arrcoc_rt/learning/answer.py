"""The frozen model's answer loss: cross-entropy of the reference answer's tokens after the prompt
(teacher forcing), for adapters whose language model takes ``inputs_embeds`` (LLaVA, LLaVA-NeXT)."""

from __future__ import annotations


def answer_ids(adapter, answer: str) -> list:
    """The answer's token ids as they follow the prompt (no special tokens)."""
    ids = adapter.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"answer: {answer!r} has no tokens in the model's vocabulary")
    return list(ids)


def answer_loss(adapter, inputs: dict, ids: list) -> tuple[float, bool]:
    """(mean cross-entropy of ``ids`` after ``inputs``, whether greedy decoding would give exactly
    them), without gradients: the model is frozen."""
    torch = adapter._torch
    model = adapter.model
    with torch.no_grad():
        target = torch.tensor([ids], device=inputs["inputs_embeds"].device)
        emb = model.get_input_embeddings()(target).to(inputs["inputs_embeds"].dtype)
        embeds = torch.cat([inputs["inputs_embeds"], emb], dim=1)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(target)], dim=1)
        logits = model(inputs_embeds=embeds, attention_mask=mask).logits.float()
        n = len(ids)
        pred = logits[0, -n - 1:-1]
        loss = torch.nn.functional.cross_entropy(pred, target[0])
        return float(loss), bool((pred.argmax(-1) == target[0]).all())
