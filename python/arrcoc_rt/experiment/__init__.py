"""``arrcoc-rt experiment``: does arrcoc_rt's choice of visual tokens help a frozen VLM answer?

* ``data``: questions: our JSONL format, VQAv2 and TextVQA as distributed, sampling.
* ``synthetic``: the built-in set of rendered scenes and short videos (answers depend on a small region).
* ``vqa``: the VQA answer normalization and accuracy.
* ``methods``: the compared ways of choosing tokens (arrcoc_rt's packs; all / uniform / VisionZip-style /
  EVS-style selections on the model's grid) and the rows of the studies (augmentation, equal, budget).
* ``runner``: runs methods over questions with one adapter: accuracy, tokens, latency per stage, memory.
* ``report``: summaries, the seeds' decision rules, the budget study's buckets and tier scores, the
  table, JSON and CSV.
* ``cli``: the ``arrcoc-rt experiment`` command.

It lives beside ``evaluation`` rather than inside ``vlm``: like ``evaluation`` it is a command-level
study that composes the pipeline, a VLM adapter and a dataset, and most of it (data readers, the
VQA metric, the decision rules, the report) has nothing to do with adapting a model; ``vlm`` stays
the adapter layer it uses. Importing it does not import torch.
"""

from .data import DatasetError, Question, load_dataset, load_jsonl, read_textvqa, read_vqav2, sample
from .methods import Method, build_methods, select_evs, select_uniform, select_visionzip
from .report import verdicts
from .synthetic import synthetic_questions
from .vqa import normalize_answer, vqa_accuracy

__all__ = ["DatasetError", "Method", "Question", "build_methods", "load_dataset", "load_jsonl", "normalize_answer",
           "read_textvqa", "read_vqav2", "sample", "select_evs", "select_uniform", "select_visionzip",
           "synthetic_questions", "verdicts", "vqa_accuracy"]
