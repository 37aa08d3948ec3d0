"""Train the categorical VAE with any estimator; checkpoint, resume, evaluate.

Every random choice is a pure function of ``(seed, step, rank)``: the model's
initial weights come from ``torch.manual_seed(seed)``, the minibatch order of
epoch ``e`` from a permutation seeded by ``(seed, e)``, and the estimator's
noise at step ``t`` on rank ``r`` from a seed derived from ``(seed, t, r)``.
A checkpoint therefore needs only the weights, the optimizer state, the step
and the metrics so far, and a run interrupted and resumed ends with exactly
the metrics of one that was not.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result, _ = train(TrainConfig(steps=20, estimator="st_gumbel"), out=Path(out))
    >>> result.final["neg_elbo"] > 0
    True
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..schedules import Schedule, parse_schedule
from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_same_config,
    load_checkpoint,
    remove_stale_temporaries,
    save_atomic,
)
from .data import load_dataset
from .distributed import Dist
from .model import BOUNDS_CALL_BYTES, CategoricalVAE

EVAL_CHUNK = 100  # test images per evaluation call: fixed, so the eval noise is too


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's numbers (saved as ``config.json``)."""

    data: str = "digits"
    estimator: str = "gumbel_softmax"
    tau: str = "1.0"
    samples: int = 1
    latents: int = 4
    classes: int = 4
    hidden: int = 256
    steps: int = 1000
    batch_size: int = 100
    lr: float = 3e-3
    seed: int = 0
    iw_samples: int = 100
    eval_every: int = 0
    checkpoint_every: int = 500
    device: str = "cpu"
    world_size: int = 1

    def __post_init__(self) -> None:
        positive = {"samples": 1, "latents": 1, "classes": 2, "hidden": 2, "steps": 1,
                    "batch_size": 1, "iw_samples": 1, "eval_every": 0, "checkpoint_every": 0,
                    "world_size": 1, "seed": 0}
        for name, low in positive.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name.replace('_', '-')} must be an integer >= {low}, "
                                 f"got {value!r}")
        if not (isinstance(self.lr, float | int) and 0 < self.lr < float("inf")):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        parse_schedule(self.tau)
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    @property
    def evaluate_every(self) -> int:
        """``eval_every``, or ten evaluations spread over the run when it is 0."""
        return self.eval_every or max(1, self.steps // 10)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with its checkpoint."""
        return {k: v for k, v in self.to_dict().items() if k != "checkpoint_every"}


@dataclass
class RunResult:
    """Per-step training losses, test evaluations, and the final metrics."""

    config: TrainConfig
    train: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    step: int = 0

    @property
    def final(self) -> dict[str, float]:
        last = self.evals[-1] if self.evals else {}
        return {"step": self.step, "neg_elbo": last.get("neg_elbo", float("nan")),
                "iw_bound": last.get("iw_bound", float("nan")),
                "steps_per_sec": self.step / self.train_seconds if self.train_seconds else 0.0}


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint at ``step``."""

    def __init__(self, signum: int, step: int, folder: Path | None) -> None:
        super().__init__(signum, step, folder)
        self.signum, self.step, self.folder = signum, step, folder

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name} at step {self.step}"


def derive_seed(*words: int) -> int:
    """A 63-bit seed from a tuple of non-negative ints (NumPy's SeedSequence hashing)."""
    lo, hi = np.random.SeedSequence(list(words)).generate_state(2, np.uint32).tolist()
    return int(lo) | (int(hi) & 0x7FFFFFFF) << 32


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (main thread only)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def training_bytes(config: TrainConfig, n_pixels: int) -> int:
    """A generous estimate of a run's peak memory: the weights with their gradients and
    Adam's two moments (four float32 copies), the activations of one training step (each
    of ``batch_size x samples`` codes through both MLPs, twice for what autograd saves),
    and one evaluation call (at most ``BOUNDS_CALL_BYTES``)."""
    h, h2, code = config.hidden, config.hidden // 2, config.latents * config.classes
    weights = 2 * (n_pixels * h + h * h2 + h2 * code) + 2 * (h + h2) + code + n_pixels
    per_sample = 2 * (12 * code + 8 * config.latents + 8 * (h + h2) + 12 * n_pixels)
    return 16 * weights + config.batch_size * config.samples * per_sample + BOUNDS_CALL_BYTES


def batches_per_epoch(n_images: int, batch_size: int, world: int) -> int:
    """Global batches in one epoch; a ``ValueError`` when not even one fits."""
    per_epoch = n_images // (batch_size * world)
    if per_epoch < 1:
        raise ValueError(f"batch-size {batch_size} x {world} processes exceeds the "
                         f"{n_images} training images")
    return per_epoch


class _Batches:
    """Minibatch of step t on rank r: a per-epoch permutation sliced by global position."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int, ctx: Dist) -> None:
        self.data, self.batch_size, self.seed, self.ctx = data, batch_size, seed, ctx
        self.per_epoch = batches_per_epoch(len(data), batch_size, ctx.world)
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
            self._epoch, self._order = epoch, torch.from_numpy(order)
        start = (i * self.ctx.world + self.ctx.rank) * self.batch_size
        return self.data[self._order[start:start + self.batch_size].to(self.data.device)]


def evaluate(model: CategoricalVAE, test: torch.Tensor, config: TrainConfig) -> dict[str, float]:
    """Test-set mean -ELBO and -IWAE bound (nats), with fixed evaluation noise."""
    model.eval()
    elbo, iw = [], []
    for i, start in enumerate(range(0, len(test), EVAL_CHUNK)):
        e, w = model.bounds(test[start:start + EVAL_CHUNK], config.iw_samples,
                            seed=derive_seed(config.seed, 2**31 - 1, i))
        elbo.append(e)
        iw.append(w)
    model.train()
    return {"neg_elbo": torch.cat(elbo).mean().item(), "iw_bound": torch.cat(iw).mean().item()}


class Run:
    """One training run: model, optimizer, data, schedule, and its output folder."""

    def __init__(self, config: TrainConfig, out: Path | None, ctx: Dist | None = None,
                 data: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None) -> None:
        # without a context (one process, as in compare's workers) the config's device
        self.config, self.out = config, out
        self.ctx = ctx or Dist(device=torch.device(config.device))
        self.train_x, self.test_x, self.image_shape = data or load_dataset(config.data)
        device = self.ctx.device
        self.train_x, self.test_x = self.train_x.to(device), self.test_x.to(device)
        torch.manual_seed(config.seed)
        self.model = CategoricalVAE(self.train_x.shape[1], config.latents, config.classes,
                                    config.hidden).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.schedule: Schedule = parse_schedule(config.tau)
        self.batches = _Batches(self.train_x, config.batch_size, config.seed, self.ctx)
        self.result = RunResult(config)

    def state(self) -> dict[str, Any]:
        r = self.result
        return {"format": 1, "config": json.dumps(self.config.resume_key(), sort_keys=True),
                "step": r.step, "train_seconds": r.train_seconds,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "train": r.train, "evals": r.evals}

    def save(self) -> None:
        if self.out is not None and self.ctx.main:
            save_atomic(self.state(), self.out / CHECKPOINT_NAME)

    def restore(self) -> None:
        """Load ``out/checkpoint.pt`` (verified, weights_only) after checking it is this
        config's; ``steps`` may have grown (the run is extended), all else must match."""
        assert self.out is not None
        state = load_checkpoint(self.out)
        check_same_config(json.loads(state["config"]), self.config.resume_key(), self.out,
                          ignore=("steps",))
        if state["step"] > self.config.steps:
            raise CheckpointError(f"checkpoint in {self.out} is at step {state['step']}, beyond "
                                  f"steps={self.config.steps}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        r = self.result
        r.step, r.train_seconds = int(state["step"]), float(state["train_seconds"])
        r.train, r.evals = list(state["train"]), list(state["evals"])

    def _write_metrics(self, line: dict[str, Any], mode: str = "a") -> None:
        if self.out is not None and self.ctx.main:
            with open(self.out / "metrics.jsonl", mode) as handle:
                handle.write(json.dumps(line) + "\n")

    def _rewrite_metrics(self) -> None:
        if self.out is None or not self.ctx.main:
            return
        lines = sorted([{"split": "train", **t} for t in self.result.train]
                       + [{"split": "test", **e} for e in self.result.evals],
                       key=lambda d: (d["step"], d["split"] == "test"))
        with open(self.out / "metrics.jsonl", "w") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)

    def fit(self, *, resume: bool = False, progress: bool = False,
            stop: Callable[[], bool] | None = None) -> RunResult:
        """Train to ``config.steps``; on a signal, or once ``stop()`` returns True (it is
        asked between steps), checkpoint and raise :class:`Interrupted`."""
        config, ctx, r = self.config, self.ctx, self.result
        if self.out is not None and ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)
        if resume:
            self.restore()
        if self.out is not None and ctx.main:
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
            self._rewrite_metrics()
        net: torch.nn.Module = self.model
        if ctx.world > 1:
            on_gpu = ctx.device.type == "cuda"
            net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[ctx.device] if on_gpu else None)
        bar = _progress(config.steps, r.step, enabled=progress and ctx.main)
        try:
            with stop_on_signals() as caught:
                while r.step < config.steps:
                    if ctx.any(bool(caught) or (stop is not None and stop())):
                        self.save()
                        raise Interrupted(caught[0] if caught else signal.SIGTERM, r.step,
                                          self.out)
                    self._step(net, bar)
        finally:
            if bar is not None:
                bar.close()
        self.save()
        return r

    def _step(self, net: torch.nn.Module, bar: Any) -> None:
        config, r = self.config, self.result
        tau = self.schedule(r.step)
        start = time.perf_counter()
        x = self.batches(r.step)
        loss = net(x, config.estimator, tau=tau, n_samples=config.samples,
                   seed=derive_seed(config.seed, r.step, self.ctx.rank))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        value = loss.item()
        r.train_seconds += time.perf_counter() - start
        if not np.isfinite(value):
            raise FloatingPointError(f"the training loss became {value} at step {r.step} "
                                     f"(estimator {config.estimator}, tau {tau:g}); "
                                     "try a smaller --lr")
        r.step += 1
        entry = {"step": r.step, "loss": value, "tau": tau}
        r.train.append(entry)
        self._write_metrics({"split": "train", **entry})
        if r.step % config.evaluate_every == 0 or r.step == config.steps:
            if self.ctx.main:
                scores = {"step": r.step, **evaluate(self.model, self.test_x, config)}
                r.evals.append(scores)
                self._write_metrics({"split": "test", **scores})
        if config.checkpoint_every and r.step % config.checkpoint_every == 0:
            self.save()
        if bar is not None:
            bar.update(1)
            if r.step % 10 == 0 or r.step == config.steps:
                bar.set_postfix(loss=f"{value:.2f}", tau=f"{tau:.3f}", refresh=False)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when it is a terminal and ``enabled``; else None."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)


def train(config: TrainConfig, out: Path | None = None, *, resume: bool = False,
          progress: bool = False, ctx: Dist | None = None,
          data: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None,
          stop: Callable[[], bool] | None = None) -> tuple[RunResult, Run]:
    """Build a :class:`Run`, train it, and return its result and the run (for reporting).

    ``data`` is ``load_dataset(config.data)`` when the caller has already loaded it;
    ``stop`` is :meth:`Run.fit`'s."""
    run = Run(config, out, ctx, data)
    return run.fit(resume=resume, progress=progress, stop=stop), run
