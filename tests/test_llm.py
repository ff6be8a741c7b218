"""Causal-LM unlearning: data, exact loss identities, metric hand computations, CLI-free API.

Every model and tokenizer is built here, tiny; nothing is downloaded.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from cli_helpers import run_cli

from obliviate.data.dataset import DataError  # noqa: E402
from obliviate.llm import (  # noqa: E402
    QA,
    LMTrainConfig,
    evaluate_lm,
    finetune,
    generate_profiles,
    load_causal_lm,
    load_jsonl,
    profile_task,
    save_causal_lm,
    task_from_keys,
    tiny_gpt2,
    train_tokenizer,
    unlearn_lm,
)
from obliviate.llm.methods import LM_REGISTRY, Batches, lr_factor, make_lm_config, npo_loss, retain_kl  # noqa: E402
from obliviate.llm.metrics import (  # noqa: E402
    answer_scores,
    forget_quality,
    min_k_score,
    rouge_l_recall,
    truth_ratios,
)
from obliviate.llm.model import IGNORE, encode, prompt, qa_batch, sequence_logprob  # noqa: E402
from obliviate.llm.verify import LMVerifyConfig, verify_lm  # noqa: E402
from obliviate.methods import MethodError  # noqa: E402

PINNED_ANSWER = "The birthplace of Gaia Zolike is Estravo."


@pytest.fixture(scope="module")
def task():
    return profile_task(0.1, n_people=20, seed=0)


@pytest.fixture(scope="module")
def tok(task):
    return train_tokenizer(task.corpus())


@pytest.fixture(scope="module")
def model(tok):
    return tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, seed=0)


# --- data --------------------------------------------------------------------------------


def test_profiles_have_ten_facts_with_paraphrase_and_wrong_perturbations(task):
    by_key: dict[str, list[QA]] = {}
    for qa in task.forget + task.retain + task.holdout:
        by_key.setdefault(qa.key, []).append(qa)
    assert len(by_key) == 22 and all(len(v) == 10 for v in by_key.values())
    for qa in task.forget:
        assert len(qa.perturbed) == 4 and qa.paraphrased not in qa.perturbed and len(set(qa.perturbed)) == 4
    assert {qa.key for qa in task.holdout}.isdisjoint({qa.key for qa in task.forget + task.retain})
    assert all(qa.key == "world" for qa in task.world) and len(task.world) == 36


def test_forget_splits_are_nested_and_sized():
    keys = {f: {qa.key for qa in profile_task(f, n_people=100).forget} for f in (0.01, 0.05, 0.10)}
    assert [len(keys[f]) for f in (0.01, 0.05, 0.10)] == [1, 5, 10]
    assert keys[0.01] <= keys[0.05] <= keys[0.10]


def test_generator_is_deterministic_across_processes():
    # pinned: a generator that followed set or hash order would change between interpreter runs
    assert generate_profiles(3, seed=0) == generate_profiles(3, seed=0)
    assert generate_profiles(3, seed=0)["p0000"][0].answer == PINNED_ANSWER


def test_jsonl_loader_and_key_split(tmp_path):
    path = tmp_path / "facts.jsonl"
    rows = [
        {"question": "Who?", "answer": "Me.", "key": "a", "paraphrased": "It is me.", "perturbed": ["It is you."]},
        {"question": "Where?", "answer": "Here.", "key": "b"},
        {"question": "When?", "answer": "Now.", "key": "c"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    loaded = load_jsonl(path)
    assert loaded[0] == QA("Who?", "Me.", "a", "It is me.", ("It is you.",))
    split = task_from_keys(loaded, ["a"], ["c"])
    assert [qa.key for qa in split.forget] == ["a"] and [qa.key for qa in split.retain] == ["b"]
    assert [qa.key for qa in split.holdout] == ["c"]
    with pytest.raises(DataError, match="not in the data"):
        task_from_keys(loaded, ["zz"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "facts.jsonl:2: not valid JSON"),
        ('{"question": "q", "key": "k"}', "'answer' is missing"),
        ('{"question": "q", "answer": "a", "key": "k", "perturbed": ["x"]}', "need a 'paraphrased'"),
        ('{"question": "q", "answer": "a", "key": "k", "extra": 1}', "unknown field"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_jsonl_loader_rejects_bad_rows_in_one_line(tmp_path, line, message):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"question": "q", "answer": "a", "key": "k"}\n' + line + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_jsonl(path)
    assert "\n" not in str(info.value)


def test_encoding_masks_the_prompt(task, tok):
    qa = task.forget[0]
    ids, labels = encode(tok, qa.question, qa.answer)
    head = len(tok(prompt(qa.question))["input_ids"])
    assert labels[:head] == [IGNORE] * head and labels[head:] == ids[head:]
    assert ids[head:-1] == tok(" " + qa.answer, add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids


# --- exact identities --------------------------------------------------------------------


def _batches(task, tok, n=6):
    forget = qa_batch(tok, task.forget[:n])
    return Batches(forget, qa_batch(tok, task.retain[:n]), qa_batch(tok, task.forget[:n], ["I don't know."] * n))


def _method(name, **config):
    cls = LM_REGISTRY[name]
    return cls(cls.config_class(**config))


def test_gradient_ascent_loss_is_minus_the_training_loss(task, tok, model):
    data = _batches(task, tok)
    hf_loss = model(**data.forget).loss  # Hugging Face's own causal-LM loss on the answer tokens
    assert _method("gradient_ascent").loss(model, model, data).item() == pytest.approx(-hf_loss.item(), rel=1e-6)


def test_graddiff_is_retain_minus_forget(task, tok, model):
    data = _batches(task, tok)
    expected = model(**data.retain).loss - model(**data.forget).loss
    assert _method("graddiff").loss(model, model, data).item() == pytest.approx(expected.item(), abs=1e-5)
    weighted = _method("graddiff", gamma=2.0, alpha=0.5).loss(model, model, data)
    assert weighted.item() == pytest.approx(
        (0.5 * model(**data.retain).loss - 2 * model(**data.forget).loss).item(), abs=1e-5
    )


def _grad(model, loss_fn):
    model.zero_grad()
    loss_fn().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_npo_gradient_tends_to_gradient_ascent_as_beta_vanishes(task, tok, model):
    student = copy.deepcopy(model)
    reference = tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, seed=1)  # pi/pi_ref far from 1
    batch = qa_batch(tok, task.forget[:6])
    ascent = _grad(student, lambda: sequence_logprob(student, batch)[0].mean())
    near = _grad(student, lambda: npo_loss(student, reference, batch, beta=1e-6))
    far = _grad(student, lambda: npo_loss(student, reference, batch, beta=1.0))
    assert torch.allclose(near, ascent, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(far, ascent, rtol=1e-2, atol=1e-4)


# --- metric hand computations --------------------------------------------------------------


def test_kl_retain_term_vanishes_against_itself_and_adds_to_the_method_loss(task, tok, model):
    retain = qa_batch(tok, task.retain[:8])
    assert retain_kl(model, model, retain).item() == pytest.approx(0.0, abs=1e-6)
    other = tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, seed=5)
    kl = retain_kl(other, model, retain)
    inputs = {"input_ids": retain["input_ids"], "attention_mask": retain["attention_mask"]}
    with torch.no_grad():  # KL(original || model) at each position, averaged over question and answer
        p = torch.log_softmax(model(**inputs).logits[:, :-1], -1)
        q = torch.log_softmax(other(**inputs).logits[:, :-1], -1)
    real = retain["attention_mask"][:, 1:].bool()  # positions whose next token is not padding
    assert (~real).any() and (retain["labels"][:, 1:] == IGNORE)[real].any()  # padding and question both present
    by_hand = (p.exp() * (p - q)).sum(-1)[real].mean()
    assert kl.item() == pytest.approx(by_hand.item(), rel=1e-5) and kl.item() > 0
    data = Batches(qa_batch(tok, task.forget[:4]), retain, None)
    plain = LM_REGISTRY["npo"](make_lm_config("npo", kl=0.0)).loss(other, model, data)
    # a weight large enough that the term stands well above float32 rounding of the whole loss
    with_kl = LM_REGISTRY["npo"](make_lm_config("npo", kl=200.0)).loss(other, model, data)
    assert (with_kl - plain).item() == pytest.approx(200 * kl.item(), rel=1e-5)


def test_truth_ratio_matches_hand_computation(task, tok, model):
    rows = task.forget[:3]
    expected = []
    for qa in rows:
        # Hugging Face's loss of one example is the mean answer-token NLL, so exp(-loss) = P**(1/|a|)
        para = math.exp(-model(**qa_batch(tok, [qa], [qa.paraphrased])).loss.item())
        pert = [math.exp(-model(**qa_batch(tok, [qa], [p])).loss.item()) for p in qa.perturbed]
        expected.append(np.mean(pert) / para)
    assert np.allclose(truth_ratios(model, tok, rows), expected, rtol=1e-5)


def test_forget_quality_is_the_ks_p_value():
    a, b = np.array([0.1, 0.2, 0.3, 0.4, 0.5]), np.array([0.6, 0.7, 0.8, 0.9, 1.0])
    assert forget_quality(a, b) == pytest.approx(2 / math.comb(10, 5))  # exact two-sided p at D = 1
    assert forget_quality(a, a) == pytest.approx(1.0)


def test_rouge_l_recall_by_hand():
    # LCS of "ada was born in paris" and "ada lives in paris" is "ada in paris": 3 of 5 words
    assert rouge_l_recall(["Ada was born in Paris."], ["Ada lives in Paris"])[0] == pytest.approx(0.6)
    assert rouge_l_recall(["Ada plays the harps."], ["ada play the harp"])[0] == pytest.approx(1.0)  # stemmed


def test_min_k_by_hand():
    assert min_k_score(np.array([-1.0, -5.0, -3.0, -2.0, -4.0]), k=0.4) == pytest.approx(4.5)
    assert min_k_score(np.array([-2.0]), k=0.4) == pytest.approx(2.0)


class _FixedLM(torch.nn.Module):
    """Predicts a fixed token at every position with probability 0.9 (uniform rest)."""

    def __init__(self, vocab: int, predictions: torch.Tensor):
        super().__init__()
        self.vocab, self.predictions = vocab, predictions

    def forward(self, input_ids, attention_mask=None, **_):
        p = torch.full((*input_ids.shape, self.vocab), 0.1 / (self.vocab - 1))
        p.scatter_(-1, self.predictions[:, : input_ids.shape[1]].unsqueeze(-1), 0.9)
        return SimpleNamespace(logits=p.log())


def test_extraction_strength_and_scores_by_hand(task, tok):
    qa = task.forget[0]
    ids, labels = encode(tok, qa.question, qa.answer)
    answer_at = [t for t, lab in enumerate(labels) if lab != IGNORE]
    n = len(answer_at)
    predictions = torch.tensor(ids[1:] + [0]).unsqueeze(0)  # position t predicts token t+1: all right
    predictions[0, answer_at[1] - 1] = (ids[answer_at[1]] + 1) % len(tok)  # second answer token wrong
    scores = answer_scores(_FixedLM(len(tok), predictions), tok, [qa])
    # greedy decoding reproduces the answer only after its first two tokens are given
    assert scores.extraction[0] == pytest.approx(1 - 2 / n)
    wrong = math.log(0.1 / (len(tok) - 1))
    assert scores.logprob[0] == pytest.approx((n - 1) * math.log(0.9) + wrong, rel=1e-5)
    assert scores.min_k[0] == pytest.approx(-np.mean(sorted([wrong] + [math.log(0.9)] * (n - 1))[: math.ceil(0.4 * n)]))


# --- methods -------------------------------------------------------------------------------


def test_every_method_runs_and_never_modifies_the_original(task, tok, model):
    before = copy.deepcopy(model.state_dict())
    for name in LM_REGISTRY:
        result = unlearn_lm(model, tok, task, name, epochs=1, batch_size=8)
        assert result.log.steps == math.ceil(len(task.forget) / 8) and result.log.method == name
        changed = any(not torch.equal(result.model.state_dict()[k], v) for k, v in before.items())
        assert changed, name
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_on_epoch_sees_each_epoch_in_eval_mode_and_can_stop_the_run(task, tok, model):
    seen = []

    def check(epoch, student):
        seen.append((epoch, student.training))
        return epoch == 1

    result = unlearn_lm(model, tok, task, "npo", epochs=5, batch_size=8, on_epoch=check)
    assert seen == [(0, False), (1, False)] and result.log.steps == 2 * math.ceil(len(task.forget) / 8)


def test_stop_when_forgotten_ends_the_run_once_the_verdict_passes(tok, model):
    # never-seen facts identical to the forget facts: the verdict passes after any epoch (AUC 0.5,
    # ROUGE gap 0), so the run stops after the first; without never-seen facts it is undecided
    base = profile_task(0.3, n_people=20, seed=0)
    same = dataclasses.replace(base, holdout=list(base.forget))
    seen = []
    result = unlearn_lm(
        model, tok, same, "npo", epochs=4, batch_size=8, stop_when_forgotten=True, on_epoch=lambda e, m: seen.append(e)
    )
    per_epoch = math.ceil(len(base.forget) / 8)
    assert len(base.forget) >= 30 and seen == [0]
    assert result.log.steps == per_epoch and result.log.details == {"epochs_run": 1, "forgotten_at": 1}
    blind = unlearn_lm(model, tok, dataclasses.replace(base, holdout=[]), "npo", epochs=2, stop_when_forgotten=True)
    assert blind.log.steps == 2 * math.ceil(len(base.forget) / 32)
    assert blind.log.details == {"epochs_run": 2, "forgotten_at": None}


def test_stop_when_forgotten_stops_a_quick_forgetter_before_its_budget():
    # a model that memorised its training people (truth ratios included) forgets them within a
    # few epochs of NPO without its KL term (which slows forgetting); the run ends at the first
    # epoch whose truth ratios look never-seen while neither loss nor greedy answers still show
    # the forget facts remembered
    task = profile_task(0.3, n_people=20, seed=0, holdout=4)  # 60 forget, 40 never-seen facts
    tok = train_tokenizer(task.corpus())
    start = tiny_gpt2(tok, n_layer=1, n_embd=64, n_head=4, seed=0)
    original = finetune(start, tok, task.train, LMTrainConfig(epochs=80, lr=1e-2)).model
    strict = LMVerifyConfig(bootstrap=0)

    def forgotten(model):
        verdict = verify_lm(model, tok, task, config=strict)
        auc, gap = verdict.check("mia_auc").value, verdict.check("rouge_gap").value
        return verdict.check("truth_ratio_ks").status == "pass" and auc <= 0.6 and gap <= 10

    assert verify_lm(original, tok, task, config=strict).check("truth_ratio_ks").status == "fail"
    seen = []
    result = unlearn_lm(
        original, tok, task, "npo", epochs=20, batch_size=8, lr=1e-3, kl=0.0, stop_when_forgotten=True,
        on_epoch=lambda e, m: seen.append(forgotten(m)),
    )  # fmt: skip
    stop = result.log.details["forgotten_at"]
    assert stop is not None and stop < 20 and result.log.details["epochs_run"] == stop
    assert seen == [False] * (stop - 1) + [True]


def test_lora_option_returns_a_plain_model_with_merged_weights(task, tok, model):
    result = unlearn_lm(model, tok, task, "npo", epochs=1, batch_size=8, lora_rank=4, lr=1e-2)
    assert set(result.model.state_dict()) == set(model.state_dict())
    assert not torch.equal(
        result.model.state_dict()["transformer.h.0.mlp.c_fc.weight"],
        model.state_dict()["transformer.h.0.mlp.c_fc.weight"],
    )


def _largest_step(model, result):
    after = result.model.state_dict()
    return max((after[k] - v).abs().max().item() for k, v in model.state_dict().items())


def test_warmup_and_gradient_clipping_shape_the_first_step(task, tok, model):
    # one step (every forget fact in one batch): AdamW's first step moves a weight by lr * sign(grad)
    # when the gradient is far above eps, so the largest change is the step's learning rate
    one = {"epochs": 1, "batch_size": len(task.forget), "lr": 1e-3, "kl": 0.0}
    plain = _largest_step(model, unlearn_lm(model, tok, task, "npo", **one, warmup=0, max_grad_norm=None))
    warm = _largest_step(model, unlearn_lm(model, tok, task, "npo", **one, warmup=1, max_grad_norm=None))
    assert plain == pytest.approx(1e-3, rel=1e-3) and warm == pytest.approx(5e-4, rel=1e-3)
    # a norm far below eps leaves Adam almost nothing to step with
    clipped = _largest_step(model, unlearn_lm(model, tok, task, "npo", **one, warmup=0, max_grad_norm=1e-12))
    assert clipped < 1e-5


def test_linear_schedule_decays_after_warmup_and_constant_holds():
    # 2 warm-up steps of 10: 1/3, 2/3, then 1 at step 2 down to 1/8 at the last step (0 one step later)
    linear, constant = lr_factor(2, 10, "linear"), lr_factor(2, 10, "constant")
    assert [linear(s) for s in (0, 1, 2, 5, 9)] == pytest.approx([1 / 3, 2 / 3, 1.0, 5 / 8, 1 / 8])
    assert [constant(s) for s in (0, 1, 2, 9)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert lr_factor(0, 4, "linear")(0) == 1.0 and lr_factor(0, 4, "linear")(3) == 0.25
    with pytest.raises(MethodError, match="schedule"):
        make_lm_config("npo", schedule="cosine")


def test_linear_schedule_halves_the_second_of_two_steps(task, tok, model):
    # both runs take the same first step; Adam's second step scales with the rate, which the
    # linear schedule halves at the second of two steps
    one = {"batch_size": len(task.forget), "kl": 0.0, "warmup": 0, "max_grad_norm": None}
    first = unlearn_lm(model, tok, task, "npo", epochs=1, **one).model.state_dict()
    held = unlearn_lm(model, tok, task, "npo", epochs=2, **one).model.state_dict()
    decayed = unlearn_lm(model, tok, task, "npo", epochs=2, schedule="linear", **one).model.state_dict()
    for name, w in first.items():
        torch.testing.assert_close(decayed[name] - w, (held[name] - w) / 2, rtol=1e-3, atol=1e-7)
    assert max((held[k] - w).abs().max().item() for k, w in first.items()) > 1e-5


def test_bad_method_or_config_is_a_method_error(task, tok, model):
    with pytest.raises(MethodError, match="unknown LM method"):
        unlearn_lm(model, tok, task, "nope")
    with pytest.raises(MethodError, match="beta"):
        unlearn_lm(model, tok, task, "npo", beta=-1)
    with pytest.raises(MethodError, match="layer"):
        unlearn_lm(model, tok, task, "rmu", layer=5)


def test_local_model_directory_round_trip(tmp_path, task, tok, model):
    path = save_causal_lm(tmp_path / "lm", model, tok)
    loaded, loaded_tok = load_causal_lm(path)
    batch = qa_batch(tok, task.forget[:2])
    assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)
    assert loaded_tok(" Arvento")["input_ids"] == tok(" Arvento")["input_ids"]
    with pytest.raises(DataError, match="exists"):
        save_causal_lm(path, model, tok)
    with pytest.raises(DataError, match="no config.json"):
        load_causal_lm(tmp_path)


def test_evaluate_reports_every_metric(task, tok, model):
    other = tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, seed=3)
    report = evaluate_lm({"a": model, "retain": other}, tok, task, max_retain=20)
    assert report["retain"]["forget_quality"] == pytest.approx(1.0) and report["retain"]["privleak"] == 0.0
    for key in ("forget_quality", "model_utility", "forget_rouge", "extraction_strength", "mia_min_k", "privleak"):
        assert 0 <= report["a"][key] <= 1 or key == "privleak"


@pytest.mark.slow
def test_each_method_moves_forget_quality_toward_the_oracle():
    from obliviate.llm.demo import ARCH, RECIPE  # on 30 or 50 people the original's forget quality was 0.8 / 0.012

    task = profile_task(0.1, n_people=100, seed=0)  # the benchmark's size
    tok = train_tokenizer(task.corpus())
    original = finetune(tiny_gpt2(tok, **ARCH), tok, task.train, RECIPE).model
    oracle = finetune(tiny_gpt2(tok, **ARCH), tok, [*task.retain, *task.world], RECIPE).model
    models = {"original": original, "retain": oracle}
    for name in LM_REGISTRY:
        models[name] = unlearn_lm(original, tok, task, name).model
    report = evaluate_lm(models, tok, task, max_retain=60)
    base = report["original"]["forget_quality"]
    assert base < 1e-3
    for name in LM_REGISTRY:
        assert report[name]["forget_quality"] > base, (name, report[name]["forget_quality"], base)


def test_cli_lists_lm_methods_and_refuses_unknown_ones_before_training(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")
    code, stdout, _ = run_cli(monkeypatch, capsys, "methods")
    assert code == 0 and "causal_lm" in stdout and all(name in stdout for name in LM_REGISTRY)
    out = tmp_path / "r.json"
    code, _, err = run_cli(monkeypatch, capsys, "demo", "--task", "llm", "--methods", "npo,nope", "--out", str(out))
    assert code == 2 and "unknown LM method 'nope'" in err and not out.exists()


def test_cli_forgets_keys_in_a_model_directory_and_evaluates_it(monkeypatch, capsys, tmp_path, task, tok, model):
    source = save_causal_lm(tmp_path / "original", model, tok)
    facts = tmp_path / "facts.jsonl"
    rows = task.forget + task.retain[:20] + task.holdout[:10]
    facts.write_text("\n".join(json.dumps({**qa.__dict__, "perturbed": list(qa.perturbed)}) for qa in rows))
    keys = ",".join(task.forget_keys)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    out = tmp_path / "forgot"
    args = ["forget-lm", "--model", str(source), "--data", str(facts), "--keys", keys, "--out", str(out)]
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--method", "gradient_ascent", "--set", "epochs=1")
    assert code == 0, err
    assert json.loads((out / "unlearning.json").read_text())["run"]["method"] == "gradient_ascent"
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before  # the original is untouched
    code, _, err = run_cli(monkeypatch, capsys, *args)  # --out exists now
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1
    report = tmp_path / "report.json"
    holdout = ",".join(sorted({qa.key for qa in task.holdout[:10]}))
    code, stdout, err = run_cli(
        monkeypatch, capsys, "evaluate-lm", "--model", f"a={source}", "--model", f"b={out}", "--data", str(facts),
        "--keys", keys, "--holdout-keys", holdout, "--reference", "a", "--out", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert set(json.loads(report.read_text())) == {"a", "b"}
    facts.write_text('{"question": "q"}\n')
    code, _, err = run_cli(monkeypatch, capsys, *args[:-1], str(tmp_path / "new"))
    assert code == 2 and "'answer' is missing" in err and not (tmp_path / "new").exists()


# --- reference-free verdict and the main commands ----------------------------------------


def test_verdict_on_text_compares_forget_with_never_seen_facts(task, tok, model):
    from obliviate.llm.verify import verify_lm

    same = copy.copy(task)
    same.forget = task.holdout  # forget facts that are exactly never-seen ones: nothing to tell apart
    verdict = verify_lm(model, tok, same, original=model, min_rows=10)
    assert verdict.check("mia_auc").value == 0.5 and verdict.check("rouge_gap").value == 0.0
    assert verdict.check("utility").value == 0.0 and verdict.check("truth_ratio_ks").value == 1.0
    assert verdict.status == "pass"
    memorised = finetune(copy.deepcopy(model), tok, task.forget, LMTrainConfig(epochs=40, lr=1e-2)).model
    loud = verify_lm(memorised, tok, task, original=model, min_rows=10)
    mia = loud.check("mia_auc")
    assert mia.status == "fail" and mia.value > 0.9 and mia.low <= mia.value <= mia.high
    assert loud.check("truth_ratio_ks").status == "fail"
    thin = verify_lm(memorised, tok, task, original=model)  # 20 forget facts < min_rows 30
    assert thin.check("mia_auc").status == "inconclusive" and "too few rows" in thin.check("mia_auc").reason
    unseen = verify_lm(model, tok, task_from_keys(task.train, task.forget_keys))  # no never-seen keys named
    assert unseen.status == "inconclusive" and unseen.check("utility").status == "skipped"


def test_truth_ratio_check_is_a_ks_test_of_forget_against_never_seen_ratios():
    from obliviate.llm.verify import LMVerifyConfig, truth_ratio_check

    low, high = np.array([0.1, 0.2, 0.3, 0.4, 0.5]), np.array([0.6, 0.7, 0.8, 0.9, 1.0])
    cfg = LMVerifyConfig(min_rows=5)
    apart = truth_ratio_check(low, high, cfg)  # fully separated: 2 of the C(10, 5) orderings
    assert apart.value == pytest.approx(2 / math.comb(10, 5)) and apart.status == "fail"
    assert apart.severity == pytest.approx(math.log(2 / math.comb(10, 5)) / math.log(cfg.truth_ratio_p))
    alike = truth_ratio_check(low, low.copy(), cfg)
    assert alike.value == pytest.approx(1.0) and alike.status == "pass" and alike.severity == pytest.approx(0.0)
    assert truth_ratio_check(low, high, LMVerifyConfig(truth_ratio_p=1e-3, min_rows=5)).status == "pass"
    assert truth_ratio_check(low, high, LMVerifyConfig()).status == "inconclusive"  # 5 facts < min_rows 30
    assert truth_ratio_check(low, np.array([]), cfg).status == "inconclusive"


def test_main_forget_and_evaluate_route_a_model_directory_and_jsonl(monkeypatch, capsys, tmp_path, task, tok, model):
    source = save_causal_lm(tmp_path / "original", model, tok)
    facts = tmp_path / "facts.jsonl"
    rows = task.forget + task.retain[:20] + task.holdout
    facts.write_text("\n".join(json.dumps({**qa.__dict__, "perturbed": list(qa.perturbed)}) for qa in rows))
    keys, holdout = ",".join(task.forget_keys), ",".join(sorted({qa.key for qa in task.holdout}))
    out = tmp_path / "forgot"
    base = ["--model", str(source), "--data", str(facts), "--keys", keys]
    code, stdout, err = run_cli(
        monkeypatch, capsys, "forget", *base, "--out", out, "--holdout-keys", holdout,
        "--method", "gradient_ascent", "--set", "epochs=1",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((out / "unlearning.json").read_text())
    assert record["run"]["method"] == "gradient_ascent" and record["verdict"]["forget_rows"] == len(task.forget)
    assert "verdict" in stdout and "mia_auc" in stdout
    report = tmp_path / "report.json"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "evaluate", "--model", f"original={source}", "--model", f"unlearned={out}",
        "--data", facts, "--keys", keys, "--holdout-keys", holdout, "--out", report,
    )  # fmt: skip
    assert code == 0, err
    saved = json.loads(report.read_text())
    assert saved["unlearned"]["verdict"]["checks"][-1]["name"] == "utility" and "verdict unlearned" in stdout
    new = ["--keys", keys, "--out", tmp_path / "n"]
    for args, message in [
        (["forget", "--model", source, "--data", tmp_path / "x.csv", *new], ".jsonl"),
        (["forget", "--model", tmp_path / "m.safetensors", "--data", facts, *new], "causal-LM directory"),
        (["forget", *base, "--classes", "1", "--out", tmp_path / "n"], "forgets by --keys"),
        (["evaluate", "--model", f"a={source}", "--data", facts, "--keys", keys, "--cumulative"], "--cumulative"),
    ]:  # fmt: skip
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "n").exists()
