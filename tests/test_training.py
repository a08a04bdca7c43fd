"""``arrcoc-rt train`` (issue #14 section 1): the balancer learns against a frozen tiny VLM fitted
here, on a synthetic task whose answer depends on one small region."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.learning import TrainConfig, Trainer, colour_task, pipeline_answer_loss, relevance_share  # noqa: E402
from arrcoc_rt.learning.trainer import STAGES  # noqa: E402
from arrcoc_rt.vlm import make_adapter  # noqa: E402
from arrcoc_rt.weights import default_weights, load_weights  # noqa: E402

from conftest import devices  # noqa: E402

W, H = 160, 96
SMALL = dict(gestalt_x=2, gestalt_y=2, saccades=3)
# A rough pointer (its centre a square's side from the square's): the untrained default follows the
# query score to the pointer's peak, beside the square, and training has to learn where to look.
# With the pointer on the square the default already finds it (docs/TRAINING.md).
POINTER_OFFSET = 1.0


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A tiny LLaVA fitted to answer the colour task from its visual tokens, then frozen. Its tower
    sees 112 px (an 8 x 8 grid of cells of 20 x 12 frame pixels, about the square's size; at 56 px a
    cell was 40 x 24 and a level-1 token a quarter of the frame, so nearly any pack read the square),
    and the frames' colour cast hides the square's colour from whole-frame tokens: on held-out frames
    its answer loss is about 0.05 nats with a full-resolution token on the square and 1.43 (chance:
    ln 4 = 1.39) with only the gestalt and tokens elsewhere."""
    from vlm_models import COLOUR_WORDS, build_tiny_llava, fit_colour_reader

    path = build_tiny_llava(tmp_path_factory.mktemp("reader"), words=COLOUR_WORDS, image_size=112)
    fit_colour_reader(path, colour_task(400, seed=1), steps=1500, lr=3e-3, batch=32)
    return make_adapter(f"llava:{path}", device="cpu")


def _trainer(reader, out, **cfg):
    # Without the text guardrail: the scene's bright squares with dark centres look like text to it,
    # and training's packs do not model the guardrail (docs/TRAINING.md), so train what runs.
    pipe = arrcoc_rt.Pipeline(W, H, device="cpu", text_floor=0, **SMALL)
    config = TrainConfig(**({"batch_size": 16, "lr": 0.05, "warmup": 5, "samples": 4, "temperature": 0.3,
                             "checkpoint_every": 1000} | cfg))
    return Trainer(reader, pipe, colour_task(64, seed=3, pointer_offset=POINTER_OFFSET), out, config), pipe


def test_training_moves_budget_onto_the_answer_region(reader, tmp_path):
    """On held-out questions, with the pipeline's own selection (top S by the kernels' keys), the
    trained weights beat the untrained default in the share of the saccade budget on the square and
    in the frozen model's answer loss (docs/TRAINING.md, "Measured here")."""
    trainer, pipe = _trainer(reader, tmp_path, steps=80)
    assert set(trainer.stage_of) == set(STAGES) and trainer.stage_of[0] == "images" and trainer.stage_of[-1] == "hard"
    trainer.train()
    trained = load_weights(tmp_path / "weights.npz")
    held = colour_task(96, seed=4, pointer_offset=POINTER_OFFSET)
    default_share = relevance_share(pipe, held, default_weights())["mean"]
    trained_share = relevance_share(pipe, held, trained)["mean"]
    default_loss = pipeline_answer_loss(pipe, reader, held, default_weights())["mean"]
    trained_loss = pipeline_answer_loss(pipe, reader, held, trained)["mean"]
    print(f"held-out share {default_share:.3f} -> {trained_share:.3f}, answer loss {default_loss:.3f} -> {trained_loss:.3f}")
    assert trained_share >= default_share + 0.05, (default_share, trained_share)
    assert trained_loss < 0.8 * default_loss, (default_loss, trained_loss)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 80 and [r["stage"] for r in rows][:1] == ["images"]
    assert {"loss", "answer_loss", "accuracy", "tokens_per_question"} <= set(rows[0])
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert len(trainer.state.hard) == 16  # the hardest quarter of 64, at twice the weight


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(reader, tmp_path):
    whole, _ = _trainer(reader, tmp_path / "whole", steps=8)
    whole.train()
    first, _ = _trainer(reader, tmp_path / "parts", steps=8)
    first.train(until=5)  # interrupted after step 5: its checkpoint is all that is left
    assert not (tmp_path / "parts" / "weights.npz").exists()
    with open(tmp_path / "parts" / "log.csv", "a") as f:  # rows an interrupted run logged after it
        f.write("6,images,0,0,0,0,0,0,0,0\n7,images,0,0,0,0,0,0,0,0\n")
    second, _ = _trainer(reader, tmp_path / "parts", steps=8)
    assert second.resume() == 5
    second.train()
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "parts" / "log.csv"))] == list(range(1, 9))
    a, b = load_weights(tmp_path / "whole" / "weights.npz"), load_weights(tmp_path / "parts" / "weights.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert len(list(csv.DictReader(open(tmp_path / "parts" / "log.csv")))) == 8


def test_a_step_whose_loss_is_not_finite_stops_the_run(reader, tmp_path):
    trainer, _ = _trainer(reader, tmp_path / "nan", steps=4)
    trainer.train(until=1)
    before = {k: v.detach().clone() for k, v in trainer.policy.params.items()}
    real = trainer.question_loss
    trainer.question_loss = lambda p, rng: (real(p, rng)[0] * float("nan"), real(p, rng)[1])
    with pytest.raises(FloatingPointError, match="step 2: the loss is nan.*checkpoint.pt holds step 1"):
        trainer.train()
    for k, v in trainer.policy.params.items():  # the weights are those before the step
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


@pytest.mark.parametrize("device", devices())
def test_trained_weights_run_on_every_backend_as_the_reference(device, tmp_path):
    """Weights moved off the default by a few steps (against an untrained tiny LLaVA: any gradient
    will do here) give each backend's tokens as the float64 reference does."""
    from test_pipeline import _compare, _reference_for
    from vlm_models import COLOUR_WORDS, build_tiny_llava

    adapter = make_adapter(f"llava:{build_tiny_llava(tmp_path / 'm', words=COLOUR_WORDS)}", device="cpu")
    trainer = Trainer(adapter, arrcoc_rt.Pipeline(W, H, device="cpu", **SMALL), colour_task(8, seed=5), tmp_path / "t",
                      TrainConfig(steps=3, batch_size=4, lr=0.05, warmup=1, samples=2, temperature=0.3))
    trainer.train()
    weights = load_weights(tmp_path / "t" / "weights.npz")
    assert any(not np.array_equal(weights[k], v) for k, v in default_weights().items())
    pipe = arrcoc_rt.Pipeline(W, H, device=device, weights=str(tmp_path / "t" / "weights.npz"), **SMALL)
    for e in colour_task(3, seed=6):
        pipe.reset()
        r = pipe.process(e.frame, query=e.query)
        _compare(pipe, r, _reference_for(pipe, r, None, has_query=True))


def test_cli_trains_resumes_and_checks_its_options(tmp_path, capsys):
    from vlm_models import COLOUR_WORDS, build_tiny_llava

    model = build_tiny_llava(tmp_path / "m", words=COLOUR_WORDS)
    cli = [sys.executable, "-m", "arrcoc_rt.cli", "train", "--vlm", f"llava:{model}", "--data", "synthetic",
           "--sample", "12", "--batch-size", "4", "--warmup", "1", "--gestalt", "2", "--saccades", "3", "--quiet",
           "--out", str(tmp_path / "run")]
    r = subprocess.run(cli + ["--steps", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "trained 3 steps on 12 questions" in r.stdout
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"weights.npz", "log.csv", "checkpoint.pt", "config.json"}
    r = subprocess.run(cli + ["--steps", "5", "--resume"], capture_output=True, text=True)
    assert r.returncode == 0 and "resumed at step 3" in r.stderr, r.stderr
    assert len(list(csv.DictReader(open(tmp_path / "run" / "log.csv")))) == 5
    r = subprocess.run(cli + ["--steps", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--steps" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cli + ["--steps", "1", "--dropout", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--dropout: 1.0 is out of range" in r.stderr and "Traceback" not in r.stderr
    # options checked before anything loads (a negative clip reversed every step, a zero target and
    # NaN weights made every loss NaN, a zero checkpoint interval and no saccades crashed)
    from arrcoc_rt.cli import main

    for bad, flag in ((["--clip", "-1"], "--clip"), (["--target-tokens", "0"], "--target-tokens"),
                      (["--answer-weight", "nan"], "--answer-weight"), (["--checkpoint-every", "0"], "--checkpoint-every"),
                      (["--hard-share", "5"], "--hard-share"), (["--saccades", "0"], "--saccades"),
                      (["--sample", "0"], "--sample")):
        assert main(cli[3:] + ["--steps", "1", *bad]) == 2, bad  # (in this process: refused before any load)
        assert flag in capsys.readouterr().err, bad
    # a resume with other options names them; a finished run is not trained again; a shorter one is refused
    r = subprocess.run(cli + ["--steps", "6", "--resume", "--lr", "0.5"], capture_output=True, text=True)
    assert r.returncode == 2 and "lr 0.0001 then, 0.5 now" in r.stderr, r.stderr
    r = subprocess.run(cli + ["--steps", "5", "--resume"], capture_output=True, text=True)
    assert r.returncode == 0 and "already at step 5" in r.stderr and "nan" not in r.stdout, r.stderr
    r = subprocess.run(cli + ["--steps", "3", "--resume"], capture_output=True, text=True)
    assert r.returncode == 2 and "beyond steps 3" in r.stderr, r.stderr
    other = cli[:-1] + [str(tmp_path / "plain")]  # --out elsewhere
    r = subprocess.run(other + ["--steps", "1", "--no-relative-lr"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["relative_lr"] is False
    r = subprocess.run(cli[:5] + ["llava:" + str(tmp_path / "nothing"), "--data", "synthetic", "--steps", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
