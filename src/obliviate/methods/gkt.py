"""Zero-shot GKT (Chundawat et al. 2023): adversarial data-free distillation through a forget gate."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.engine import make_optimizer, make_scheduler
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.models import ActivationRecorder, attention_map, default_feature_layers, fresh_copy
from obliviate.progress import Progress
from obliviate.synthesis import class_labels, frozen, invert_classes


class GKTConfig(MethodConfig):
    """The paper trains 1 generator step and 10 student steps per iteration for thousands of
    iterations (Adam, generator 1e-3, student 2e-3, cosine decay, beta 250, gate 0.01). These
    defaults keep the ratio and the weights but fewer iterations and 5 student steps, which
    suffice for digit-sized tasks on a CPU; raise ``iterations`` for larger models and data (a
    student rate of 5e-3 learned about twice as fast on digits in short runs).

    One addition to the paper: ``avoid_forget`` adds to the generator's loss a hinge on the
    teacher's forget-class log-probability above ``log(gate)``. Without it the generator drifted,
    within 15 iterations on digits, to samples that all fail the gate; with no gated sample left
    neither network ever got another gradient. The hinge is zero for samples that pass the gate,
    so it changes nothing once the generator stays in the retained classes' region.

    A second addition, ``diversity`` (DAFL's information-entropy term): the generator is rewarded
    for the entropy of the teacher's mean prediction over a batch, so its samples spread over the
    classes. Without it, on MNIST-5k's AllCNN the generator collapsed to samples of one class
    and the student stayed at chance (11% retained accuracy after 100 iterations, also after
    200); with weight 5 it reached 23% after 100 and 41% after 400 iterations. On digits it
    changed little (mean retained accuracy over two models x 100/200 iterations: 73.5% vs 72.8%)."""

    iterations: int = Field(400, ge=1, description="generator updates; each is followed by student_steps")
    student_steps: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=2)
    z_dim: int = Field(64, ge=1)
    generator_width: int = Field(32, ge=1)
    generator_lr: float = Field(1e-3, gt=0)
    student_lr: float = Field(2e-3, gt=0)
    beta: float = Field(250.0, ge=0, description="weight of the attention-transfer loss")
    layers: list[str] | None = Field(None, description="layers for attention transfer; default: all but the head")
    gate: float = Field(0.01, gt=0, le=1, description="drop samples with teacher prob above this for a forget class")
    avoid_forget: float = Field(
        1.0, ge=0, description="generator hinge on teacher forget log-prob above log(gate); keeps batches non-empty"
    )
    diversity: float = Field(
        5.0, ge=0, description="generator reward: entropy of the teacher's mean prediction over a batch (class spread)"
    )
    check_every: int = Field(20, ge=1, description="iterations between checkpoint checks")
    probes_per_class: int = Field(32, ge=1, description="inverted inputs per class for the stopping rule")
    probe_steps: int = Field(100, ge=1)
    forget_weight: float = Field(1.0, ge=0, description="penalty on the student's forget probability in the score")
    patience: int | None = Field(None, ge=1, description="stop after this many checks without a better score")


class Generator(nn.Module):
    """Maps a latent vector to a pseudo input: upsampling convolutions for images (C, H, W),
    an MLP for flat rows. The output BatchNorm (no affine) keeps samples at unit scale."""

    def __init__(self, input_shape: Sequence[int], z_dim: int, width: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        if len(self.input_shape) == 3:
            c, h, w = self.input_shape
            self.start = (2 * width, math.ceil(h / 4), math.ceil(w / 4))
            self.fc = nn.Linear(z_dim, math.prod(self.start))
            self.body = nn.Sequential(
                nn.BatchNorm2d(2 * width),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                nn.BatchNorm2d(2 * width),
                nn.LeakyReLU(0.2),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(2 * width, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(0.2),
                nn.Conv2d(width, c, 3, padding=1),
                nn.BatchNorm2d(c, affine=False),
            )
        elif len(self.input_shape) == 1:
            self.start = (8 * width,)
            self.fc = nn.Linear(z_dim, 8 * width)
            d = self.input_shape[0]
            self.body = nn.Sequential(
                nn.BatchNorm1d(8 * width), nn.LeakyReLU(0.2), nn.Linear(8 * width, d), nn.BatchNorm1d(d, affine=False)
            )
        else:
            raise ValueError(f"GKT's generator handles (C, H, W) images or flat rows, not shape {self.input_shape}")

    def forward(self, z: Tensor) -> Tensor:
        x = self.body(self.fc(z).view(len(z), *self.start))
        if x.shape[1:] != self.input_shape:
            x = F.interpolate(x, size=self.input_shape[1:], mode="bilinear", align_corners=False)
        return x


def attention_loss(student: dict[str, Tensor], teacher: dict[str, Tensor]) -> Tensor:
    """Sum over layers of the mean squared distance between attention maps (feature maps only)."""
    terms = [
        (attention_map(s) - attention_map(teacher[name])).pow(2).mean() for name, s in student.items() if s.ndim >= 3
    ]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def gate_mask(teacher_logits: Tensor, forget_classes: Sequence[int], threshold: float) -> Tensor:
    """True for pseudo samples the teacher gives at most ``threshold`` probability for every forget class."""
    return teacher_logits.softmax(1)[:, list(forget_classes)].amax(1) <= threshold


@dataclass
class GKTResult:
    """The restored best student, the checkpoint record, and the iteration it came from."""

    student: nn.Module
    history: list[dict] = field(default_factory=list)
    best_iteration: int = 0


class ProbeScore:
    """The data-free stopping rule, scored on inputs inverted from the teacher once, up front.

    Forget accuracy of a GKT student leaks back late in training: as the student copies the
    teacher ever better on gated samples, it starts to reproduce the teacher's forget-class
    behaviour by generalisation. So every ``check_every`` iterations the student is scored on
    DeepInversion probes of the teacher (``obliviate.synthesis.invert_classes``): retained-class
    probes measure how well it agrees with the teacher where it should, forget-class probes
    measure how much forget-class probability it has regained. Score = agreement (student's class
    = the probe's class, over the probes the teacher itself classifies correctly) on retained
    probes - ``forget_weight`` * mean forget-class probability on forget probes; the best
    checkpoint by score is kept. No real row is read.
    """

    def __init__(self, teacher: nn.Module, data: TaskView, cfg: GKTConfig, ctx: RunContext):
        forget = data.forget_classes
        labels = class_labels(range(data.num_classes), cfg.probes_per_class, ctx.device)
        X = invert_classes(teacher, labels, data.input_shape, steps=cfg.probe_steps, generator=ctx.generator)
        is_forget = torch.isin(labels, torch.as_tensor(forget, device=ctx.device))
        self.forget = list(forget)
        self.weight = cfg.forget_weight
        with frozen(teacher), torch.no_grad():
            confirmed = forward(teacher, X).argmax(1) == labels
        # retained probes the teacher does not put in their own class (failed inversions) are left out
        retained = ~is_forget & confirmed if (~is_forget & confirmed).any() else ~is_forget
        self.X_retained, self.labels, self.X_forget = X[retained], labels[retained], X[is_forget]

    @torch.no_grad()
    def __call__(self, student: nn.Module) -> dict[str, float]:
        with frozen(student):
            agreement = float((forward(student, self.X_retained).argmax(1) == self.labels).float().mean())
            forget_prob = float(forward(student, self.X_forget).softmax(1)[:, self.forget].sum(1).mean())
        return {"agreement": agreement, "forget_prob": forget_prob, "score": agreement - self.weight * forget_prob}


def gated_knowledge_transfer(
    teacher: nn.Module,
    data: TaskView,
    cfg: GKTConfig,
    ctx: RunContext,
    on_check: Callable[[int, nn.Module], dict | None] | None = None,
) -> GKTResult:
    """Train a fresh student from ``teacher`` on gated generator samples; see ``GKT``.

    ``on_check(iteration, student)`` is called at every checkpoint check and may return extra
    numbers to log (the benchmark records real test accuracy there, outside the method).
    """
    forget = data.forget_classes
    engine = ctx.engine
    student = fresh_copy(teacher, seed=ctx.seed).to(ctx.device)
    generator = Generator(data.input_shape, cfg.z_dim, cfg.generator_width).to(ctx.device)
    layers = cfg.layers if cfg.layers is not None else default_feature_layers(teacher)
    score = ProbeScore(teacher, data, cfg, ctx)
    opt_g = make_optimizer(generator.parameters(), "adam", cfg.generator_lr)
    opt_s = make_optimizer(student.parameters(), "adam", cfg.student_lr)
    sched = [make_scheduler(o, "cosine", cfg.iterations) for o in (opt_g, opt_s)]
    history: list[dict] = []
    best_score, best_state, best_iteration, stale = -math.inf, None, 0, 0

    def sample() -> tuple[Tensor, Tensor, Tensor]:
        z = torch.randn((cfg.batch_size, cfg.z_dim), generator=ctx.generator).to(ctx.device)
        x = generator(z)
        t_logits = forward(teacher, x)
        return x, t_logits, gate_mask(t_logits.detach(), forget, cfg.gate)

    def forget_logprob(logits: Tensor) -> Tensor:
        return logits.log_softmax(1)[:, forget].logsumexp(1)

    def generator_loss(x: Tensor, t_logits: Tensor, keep: Tensor) -> Tensor:
        loss_g = cfg.avoid_forget * F.relu(forget_logprob(t_logits) - math.log(cfg.gate)).mean()
        mean_p = t_logits.softmax(1).mean(0)
        loss_g = loss_g + cfg.diversity * (mean_p * mean_p.clamp_min(1e-12).log()).sum()
        if keep.any():
            loss_g = loss_g - kl(forward(student, x[keep]), t_logits[keep])
        return loss_g

    def kl(s_logits: Tensor, t_logits: Tensor) -> Tensor:
        # log-space target: the gradient of p log p is NaN where a teacher probability underflows to 0
        return F.kl_div(s_logits.log_softmax(1), t_logits.log_softmax(1), reduction="batchmean", log_target=True)

    def check(iteration: int, gated_fraction: float) -> bool:
        nonlocal best_score, best_state, best_iteration, stale
        record = {"iteration": iteration, "gated_fraction": gated_fraction, **score(student)}
        if record["score"] > best_score:
            best_score, best_iteration, stale = record["score"], iteration, 0
            best_state = copy.deepcopy(student.state_dict())
        else:
            stale += 1
        if on_check is not None:  # after the snapshot, so a callback cannot alter the kept checkpoint
            record.update(on_check(iteration, student) or {})
        history.append(record)
        return cfg.patience is not None and stale >= cfg.patience

    with frozen(teacher), ActivationRecorder(teacher, layers) as t_rec, ActivationRecorder(student, layers) as s_rec:
        generator.train()
        student.train()
        check(0, 1.0)
        with Progress("gkt", total=cfg.iterations, enabled=ctx.progress) as bar:
            for iteration in range(1, cfg.iterations + 1):
                with engine.autocast():
                    x, t_logits, keep = sample()
                    loss_g = generator_loss(x, t_logits, keep)
                engine.step(loss_g, opt_g, where=f"gkt generator (iteration {iteration})")
                kept = 0
                for _ in range(cfg.student_steps):
                    with torch.no_grad(), engine.autocast():
                        x, t_logits, keep = sample()
                    kept += int(keep.sum())
                    if not keep.any():
                        continue
                    with engine.autocast():
                        s_logits = forward(student, x[keep])
                        t_feats = {k: v[keep] for k, v in t_rec.activations.items()}
                        loss_s = kl(s_logits, t_logits[keep]) + cfg.beta * attention_loss(s_rec.activations, t_feats)
                    engine.step(loss_s, opt_s, where=f"gkt student (iteration {iteration})")
                for opt, sch in zip((opt_g, opt_s), sched, strict=True):
                    if opt.state:  # an optimiser whose every batch was gated out has not stepped yet
                        sch.step()
                bar.advance()
                last = iteration == cfg.iterations
                if (iteration % cfg.check_every == 0 or last) and check(
                    iteration, kept / (cfg.student_steps * cfg.batch_size)
                ):
                    break
    student.load_state_dict(best_state)
    return GKTResult(student, history, best_iteration)


@register
class GKT(Method):
    """Zero-shot: distil a fresh student through generator samples, gated against forget classes.

    Reads no data at all.

    A generator is trained to maximise the teacher-student KL, the student to minimise it plus
    ``beta`` times the attention-transfer loss, both on gated samples only (teacher probability
    <= ``gate`` for every forget class). The student returned is the best checkpoint by the
    data-free probe score (``ProbeScore``), not the last one, because forget accuracy can leak
    back late in training.
    """

    name = "gkt"
    config_class = GKTConfig
    needs = frozenset()
    kinds = frozenset({"classification"})
    scenarios = frozenset({"class"})
    continuous_inputs = True

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        result = gated_knowledge_transfer(model, data, self.config, ctx)
        ctx.details["kept_iteration"] = result.best_iteration
        return result.student
