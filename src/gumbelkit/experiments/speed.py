"""Time Gumbel-Softmax against exact marginalization over one K-way latent.

Checks the speed claim of Jang et al. 2017 (Section 4.3, semi-supervised
classification): one Gumbel-Softmax sample per example trains 2x faster than
marginalizing over 10 classes and 9.9x faster over 100. The model: an MLP
encoder gives q(y | x) over K classes, an MLP decoder reconstructs x from the
one-hot y, Bernoulli pixels, KL to a uniform prior. "exact" sums the decoder
over all K classes (gumbelkit.estimate(..., "exact")); "gumbel_softmax"
decodes one relaxed sample. Both time full training steps (forward, backward,
Adam) in one process, alternating in rounds; the ratio is of median step times.

Examples:
  gumbelkit speed
  gumbelkit speed --classes 10,100,1000 --batch-size 200 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from .preflight import offset_seed, seed_value
from .vae import device_name, int_at_least, positive_int, set_threads

JANG_2017 = {10: "2.0x", 100: "9.9x"}


def class_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers >= 2 separated by commas, "
                                         f"got {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"expected integers >= 2 separated by commas, "
                                         f"got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=class_list, default=[10, 100],
                        help="values of K to time (default 10,100)")
    parser.add_argument("--batch-size", type=positive_int, default=100,
                        help="images per step (default 100)")
    parser.add_argument("--hidden", type=int_at_least(2), default=256,
                        help="width of the first hidden layer (default 256)")
    parser.add_argument("--steps", type=positive_int, default=10,
                        help="timed steps per method and round (default 10)")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="alternating rounds per method; the first is warm-up (default 3)")
    parser.add_argument("--data", default="digits", help="'digits' or 'mnist:PATH'")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seed, in [0, 2**64) (default 0)")
    parser.add_argument("--device", type=device_name, default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads (default 1)")


def _step_times(model, optimizer, batches, method: str, steps: int, seed: int) -> list[float]:
    import torch

    import gumbelkit

    times = []
    for i in range(steps):
        x = batches[i % len(batches)]
        start = time.perf_counter()
        logits = model.encode(x)
        options = {"batch_ndim": 1} if method == "exact" else {}
        rec = gumbelkit.estimate(lambda z, x=x: model.reconstruction_nll(z, x), logits, method,
                                 tau=1.0, seed=offset_seed(seed, i), **options)
        loss = (rec + model.kl_to_uniform(logits)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def check_memory(train_size: tuple[int, int], args: argparse.Namespace) -> None:
    """Refuse a K, --hidden or --batch-size whose two models (one marginalizing over all
    K classes of every image) cannot fit in the memory available."""
    from .preflight import UsageError, available_memory, human_bytes
    from .training import TrainConfig, training_bytes

    if args.batch_size > train_size[0]:
        raise UsageError(f"--batch-size {args.batch_size} exceeds the {train_size[0]} images")
    k = max(args.classes)
    config = TrainConfig(latents=1, classes=k, hidden=args.hidden,
                         batch_size=args.batch_size, samples=k)
    needed, free = 2 * training_bytes(config, train_size[1]), available_memory()
    if free is not None and needed > free:
        raise UsageError(f"--classes {k} --hidden {args.hidden} --batch-size {args.batch_size} "
                         f"need about {human_bytes(needed)} of memory (exact marginalization "
                         f"decodes all {k} classes of every image), but {human_bytes(free)} "
                         "is available; choose smaller sizes")


def measure(k: int, args: argparse.Namespace, train: object) -> dict[str, float]:
    """Median seconds per training step of each method for one K, on ``train`` images."""
    import torch

    from .model import CategoricalVAE

    train = train.to(args.device)
    torch.manual_seed(args.seed)
    batches = [train[i:i + args.batch_size]
               for i in range(0, len(train) - args.batch_size + 1, args.batch_size)]
    times: dict[str, list[float]] = {"exact": [], "gumbel_softmax": []}
    models = {}
    for method in times:
        torch.manual_seed(args.seed)
        model = CategoricalVAE(train.shape[1], 1, k, args.hidden).to(args.device)
        models[method] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    for r in range(args.rounds):
        for method, (model, optimizer) in models.items():
            t = _step_times(model, optimizer, batches, method, args.steps,
                            offset_seed(args.seed, r))
            if r > 0 or args.rounds == 1:
                times[method] += t
    return {m: statistics.median(t) for m, t in times.items()}


def run(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .preflight import UsageError
    from .report import markdown_table

    try:
        train, _, _ = load_dataset(args.data)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_memory(tuple(train.shape), args)
    set_threads(args.threads)
    rows = []
    for k in args.classes:
        t = measure(k, args, train)
        rows.append([str(k), f"{1 / t['exact']:.3g}", f"{1 / t['gumbel_softmax']:.3g}",
                     f"{t['exact'] / t['gumbel_softmax']:.1f}x", JANG_2017.get(k, "-")])
    print(f"training steps per second, batch {args.batch_size}, one K-way latent, "
          f"{args.device} (median of {args.steps * max(args.rounds - 1, 1)} steps)")
    print(markdown_table(["K", "exact (marginalize)", "gumbel_softmax",
                          "speed-up", "Jang 2017 speed-up"], rows))
    return 0
