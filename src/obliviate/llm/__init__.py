"""Forgetting facts in causal language models (TOFU-style), on CPU, with tiny models built in code.

Needs the ``llm`` extra (transformers, tokenizers, peft, rouge-score).
"""

from obliviate.llm.data import QA, LMTask, generate_profiles, load_jsonl, profile_task, task_from_keys, world_knowledge
from obliviate.llm.methods import LM_REGISTRY, LMMethodConfig, unlearn_lm
from obliviate.llm.metrics import evaluate_lm
from obliviate.llm.model import LMTrainConfig, finetune, load_causal_lm, save_causal_lm, tiny_gpt2, train_tokenizer
from obliviate.llm.verify import LMVerifyConfig, verify_lm

__all__ = [
    "LM_REGISTRY",
    "QA",
    "LMMethodConfig",
    "LMTask",
    "LMTrainConfig",
    "LMVerifyConfig",
    "evaluate_lm",
    "finetune",
    "generate_profiles",
    "load_causal_lm",
    "load_jsonl",
    "profile_task",
    "save_causal_lm",
    "task_from_keys",
    "tiny_gpt2",
    "train_tokenizer",
    "unlearn_lm",
    "verify_lm",
    "world_knowledge",
]
