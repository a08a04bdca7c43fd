"""CLIP / SigLIP through transformers, on tiny randomly initialized models the test builds from a
config and saves to a temporary folder: the real loading and feature code runs; nothing is
downloaded (from_pretrained(..., local_files_only=True))."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.encoders import HFEncoder  # noqa: E402
from arrcoc_rt.samples import sample_frames  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "red", "cat", "car", "the", "on", "billboard", "formula"]


def _tokenizer(folder, kind):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]")
    fast.save_pretrained(folder)


def _tiny(kind, folder):
    text = dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=64,
                  patch_size=16)
    torch.manual_seed(0)
    if kind == "clip":
        from transformers import CLIPConfig, CLIPModel

        text.update(eos_token_id=3, bos_token_id=2, pad_token_id=0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    else:
        from transformers import SiglipConfig, SiglipModel

        text.update(pad_token_id=0, eos_token_id=3, bos_token_id=2)
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    model.save_pretrained(folder)
    _tokenizer(folder, kind)
    return folder


@pytest.fixture(scope="module", params=["clip", "siglip"])
def checkpoint(request, tmp_path_factory):
    return request.param, _tiny(request.param, tmp_path_factory.mktemp(request.param))


def test_dense_features_text_and_exemplar_shapes(checkpoint):
    kind, folder = checkpoint
    enc = HFEncoder(folder, kind, device="cpu")
    dims = 24 if kind == "clip" else 32
    assert enc.dims == dims
    frame = sample_frames(96, 80, 1)[0]
    f = enc.encode_image(frame)
    assert f.shape == (dims, 4, 4) and f.dtype == np.float32 and np.all(np.isfinite(f))
    t = enc.encode_text("a red cat")
    assert t.shape == (dims,) and np.all(np.isfinite(t))
    np.testing.assert_array_equal(t, enc.encode_text("a red cat"))  # deterministic
    assert not np.array_equal(t, enc.encode_text("the formula on the billboard"))
    e = enc.encode_exemplar(frame[10:50, 20:70])
    assert e.shape == (1, dims)
    np.testing.assert_array_equal(f, enc.encode_image(frame))


def test_text_query_through_the_pipeline(checkpoint):
    kind, folder = checkpoint
    frames = sample_frames(160, 96, 3)
    pipe = arrcoc_rt.Pipeline(160, 96, device="cpu", encoder=f"{kind}:{folder}", encoder_every=2, pca_frames=1)
    results = [pipe.process(f, query_text="a red car") for f in frames]
    r = results[-1]
    sim = np.asarray(r.texture.channel(arrcoc_rt.Channel.QUERY_SIMILARITY, 4), np.float32)
    assert sim.shape == (6, 10) and np.all(np.abs(sim) <= 1.0 + 1e-3) and sim.std() > 0
    assert r.num_saccades > 0 and np.all(np.isfinite(r.query_score))
    sem = np.stack([np.asarray(r.texture.channel(17 + c, 4), np.float32) for c in range(16)])
    assert np.abs(sem).max() > 0  # PCA-16 fitted on the first frame
    # the same again is deterministic
    pipe2 = arrcoc_rt.Pipeline(160, 96, device="cpu", encoder=f"{kind}:{folder}", encoder_every=2, pca_frames=1)
    r2 = [pipe2.process(f, query_text="a red car") for f in frames][-1]
    np.testing.assert_array_equal(r.patches, r2.patches)


def test_loading_errors(tmp_path, checkpoint):
    kind, folder = checkpoint
    with pytest.raises(ValueError, match="does not exist"):
        HFEncoder(tmp_path / "missing", kind)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot load"):
        HFEncoder(tmp_path / "empty", kind)
    other = "siglip" if kind == "clip" else "clip"
    with pytest.raises(ValueError, match=f"holds a '{kind}' model, not '{other}'"):
        HFEncoder(folder, other)
    (tmp_path / "no_type").mkdir()  # a config.json without model_type: said so
    (tmp_path / "no_type" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="model_type"):
        HFEncoder(tmp_path / "no_type", kind)
