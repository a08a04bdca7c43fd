"""Learned relevance (needs torch): ``arrcoc-rt train`` learns the balancer against a frozen VLM
(docs/TRAINING.md). ``Trainer`` runs it; ``colour_task`` is a synthetic task whose answer depends on
one small region; ``relevance_share`` and ``pipeline_answer_loss`` measure trained weights on
held-out questions as the pipeline runs them."""

from .evaluation import pipeline_answer_loss, relevance_share
from .examples import Example
from .synthetic import colour_task
from .trainer import TrainConfig, Trainer

__all__ = ["Example", "TrainConfig", "Trainer", "colour_task", "pipeline_answer_loss", "relevance_share"]
