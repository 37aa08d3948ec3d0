"""Architecture search on the bundled digits: GDAS (gumbelkit.nn.MixedOp) against DARTS.

Search space: ``x (64 pixels/16) -> Linear(64, W) + ReLU -> cell -> cell ->
Linear(W, 10)``; a cell has two nodes, ``n1 = e1(c0)`` and ``n2 = e2(c0) +
e3(n1)`` (output ``n2``), and each of its three edges chooses one of
``relu`` (Linear(W, W) + ReLU), ``tanh`` (Linear(W, W) + Tanh), ``skip``
(identity) and ``zero`` (``gumbelkit.nn.Zero``); ``--ops`` picks another set
(also ``sigmoid`` and ``elu``, Linear(W, W) + Sigmoid / ELU). The same supernetwork is
searched twice, in lockstep on the same minibatches (scikit-learn's 8x8
digits, raw pixels 0..16 scaled to [0, 1]; the fixed 1,437 training images
are split in half: network weights learn on one half, the architecture
logits on the other, alternating, first-order):

- GDAS (Dong & Yang 2019): every edge is a ``gumbelkit.nn.MixedOp``; each
  forward samples one candidate per edge (hard Gumbel-Softmax, tau annealed
  linearly from 10 to 0.1 as in the paper) and runs only that one.
- DARTS (Liu et al. 2019): every edge runs all four candidates and returns
  their ``softmax(alpha)``-weighted sum.

Each search's derived network (the argmax candidate of every edge) is then
retrained from scratch, identically, and tested on the 360 held-out images.
Printed per method: the derived edges, the test accuracy, the median time of
one search step's forward + backward (weights step, side by side in one
process, so the ratio is what to read on a loaded machine), and the peak over
the search of the memory autograd holds for backward: the bytes of the
distinct tensors other than parameters saved by one forward of the
supernetwork (counted with ``torch.autograd.graph.saved_tensors_hooks``; this
is the part of a step's memory that grows with the number of candidates run,
while the parameters are the same for both; ``tracemalloc`` cannot
see torch's CPU allocations and the process's resident peak is dominated by
allocator reuse at these sizes).

    PYTHONPATH=src python examples/nas_digits.py [--epochs 40] [--width 256]
        [--ops relu,tanh,skip,zero] [--per-example]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from digits_data import accuracy, load_digits_labelled, training_parser
from torch import nn

from gumbelkit.nn import MixedOp, Zero
from gumbelkit.nn.mixed_op import architecture_parameters, derive_architecture
from gumbelkit.schedules import Linear

OPS = {
    "relu": lambda w: nn.Sequential(nn.Linear(w, w), nn.ReLU()),
    "tanh": lambda w: nn.Sequential(nn.Linear(w, w), nn.Tanh()),
    "sigmoid": lambda w: nn.Sequential(nn.Linear(w, w), nn.Sigmoid()),
    "elu": lambda w: nn.Sequential(nn.Linear(w, w), nn.ELU()),
    "skip": lambda w: nn.Identity(),
    "zero": lambda w: Zero(),
}
EDGES = ("e1", "e2", "e3")


class SoftMixture(nn.Module):
    """DARTS: ``sum_k softmax(alpha)_k O_k(x)``, every candidate run on every step."""

    def __init__(self, candidates: dict[str, nn.Module]) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict(candidates)
        self.logits = nn.Parameter(torch.zeros(len(candidates)))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        weights = torch.softmax(self.logits, 0)
        return sum(w * op(x) for w, op in zip(weights, self.candidates.values()))


class GdasEdge(MixedOp):
    """A MixedOp whose noise comes from the search's generator."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return super().forward(x, generator=generator)


class Cell(nn.Module):
    """Two nodes: ``n1 = e1(c0)``, ``n2 = e2(c0) + e3(n1)``; ``edge(name)`` makes each edge."""

    def __init__(self, edge) -> None:
        super().__init__()
        self.e1, self.e2, self.e3 = (edge(name) for name in EDGES)

    def forward(self, c0: torch.Tensor, **noise) -> torch.Tensor:
        n1 = self.e1(c0, **noise)
        return self.e2(c0, **noise) + self.e3(n1, **noise)


class Network(nn.Module):
    """``edge(cell, name)`` makes the edge ``name`` of cell number ``cell``."""

    def __init__(self, width: int, edge, n_cells: int = 2) -> None:
        super().__init__()
        self.stem = nn.Linear(64, width)
        self.cells = nn.ModuleList(Cell(lambda name, c=c: edge(c, name)) for c in range(n_cells))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor, **noise) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        for cell in self.cells:
            h = cell(h, **noise)
        return self.head(h)


def candidates(names: list[str], width: int) -> dict[str, nn.Module]:
    return {name: OPS[name](width) for name in names}


def derived(model: Network, names: list[str]) -> list[list[str]]:
    """The argmax candidate of every edge, per cell."""
    return [[names[int(getattr(cell, edge).logits.detach().argmax())] for edge in EDGES]
            for cell in model.cells]


def derived_network(width: int, ops: list[list[str]]) -> Network:
    """A plain network with the operation ``ops[cell][edge]`` on every edge, freshly initialised."""
    return Network(width, lambda c, name: OPS[ops[c][EDGES.index(name)]](width), len(ops))


def saved_bytes(model: Network, x: torch.Tensor, **noise) -> tuple[torch.Tensor, int]:
    """The output of ``model(x)`` and the bytes of the distinct non-parameter tensors
    autograd saved for the backward (the parameters exist whatever runs)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, **noise)
    return out, sum(seen.values())


def search(models: dict[str, Network], data, args) -> dict[str, dict[str, float]]:
    """Alternating first-order search of every model on the same minibatches."""
    x_train, y_train = data
    half = len(x_train) // 2
    x_w, y_w, x_a, y_a = x_train[:half], y_train[:half], x_train[half:], y_train[half:]
    optimizers = {}
    for name, model in models.items():
        arch = architecture_parameters(model) if name == "GDAS" else \
            [m.logits for m in model.modules() if isinstance(m, SoftMixture)]
        arch_ids = {id(p) for p in arch}
        weights = [p for p in model.parameters() if id(p) not in arch_ids]
        optimizers[name] = (torch.optim.Adam(weights, lr=3e-3),
                            torch.optim.Adam(arch, lr=args.arch_lr))
    order = torch.Generator().manual_seed(args.seed)
    noise = torch.Generator().manual_seed(args.seed + 1)
    times = {name: [] for name in models}
    peak = dict.fromkeys(models, 0)
    for _ in range(args.epochs):
        batches = zip(torch.randperm(half, generator=order).split(args.batch),
                      torch.randperm(len(x_a), generator=order).split(args.batch))
        for rows_w, rows_a in batches:
            for name, model in models.items():
                opt_w, opt_a = optimizers[name]
                start = time.perf_counter()
                loss = nn.functional.cross_entropy(model(x_w[rows_w], generator=noise),
                                                   y_w[rows_w])
                opt_w.zero_grad()
                loss.backward()
                times[name].append(time.perf_counter() - start)
                opt_w.step()
                out, held = saved_bytes(model, x_a[rows_a], generator=noise)
                peak[name] = max(peak[name], held)
                opt_a.zero_grad()
                nn.functional.cross_entropy(out, y_a[rows_a]).backward()
                opt_a.step()
                for module in model.modules():
                    if isinstance(module, MixedOp):
                        module.step()
    return {name: {"ms": 1e3 * statistics.median(times[name]), "saved": peak[name]}
            for name in models}


def retrain(model: Network, data, args) -> float:
    x_train, y_train, x_test, y_test = data
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(args.seed + 2)
    for _ in range(args.epochs):
        for rows in torch.randperm(len(x_train), generator=order).split(args.batch):
            loss = nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return accuracy(model(x_test), y_test)


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256, help="width W of the cells")
    parser.add_argument("--arch-lr", type=float, default=3e-2,
                        help="Adam learning rate of the architecture logits")
    parser.add_argument("--ops", default="relu,tanh,skip,zero",
                        help=f"comma-separated candidates of every edge, from {','.join(OPS)}")
    parser.add_argument("--per-example", action="store_true",
                        help="GDAS samples a candidate per example instead of per batch")
    args = parser.parse_args(argv)
    names = args.ops.split(",")
    unknown = [name for name in names if name not in OPS]
    if unknown or len(set(names)) != len(names):
        parser.error(f"--ops must name distinct candidates from {','.join(OPS)}, "
                     f"got {args.ops!r}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits_labelled()
    steps = args.epochs * -(-(len(x_train) // 2) // args.batch)
    tau = Linear(10.0, 0.1, steps=max(steps, 1))

    torch.manual_seed(args.seed)
    gdas = Network(args.width, lambda c, name: GdasEdge(candidates(names, args.width), tau=tau,
                                                per_example=args.per_example))
    torch.manual_seed(args.seed)
    darts = Network(args.width, lambda c, name: SoftMixture(candidates(names, args.width)))
    models = {"GDAS": gdas, "DARTS": darts}
    costs = search(models, (x_train, y_train), args)

    print(f"digits (pixels/16), 2 cells x 3 edges, candidates {names}, width {args.width}, "
          f"{args.epochs} search epochs + {args.epochs} retraining epochs, batch {args.batch}, "
          f"GDAS sampling per {'example' if args.per_example else 'batch'}, "
          f"{torch.get_num_threads()} thread(s)")
    rows = []
    for name, model in models.items():
        ops = derived(model, names)
        torch.manual_seed(args.seed)
        acc = retrain(derived_network(args.width, ops), (x_train, y_train, x_test, y_test), args)
        rows.append((name, " | ".join(" ".join(cell) for cell in ops), acc))
    header = "derived edges (cell 1 | cell 2)"
    width = max(len(header), *(len(shown) for _, shown, _ in rows)) + 2
    print(f"{'method':<7}{header:<{width}}{'test acc':>9}{'search ms/step':>16}"
          f"{'saved for backward':>20}")
    for name, shown, acc in rows:
        print(f"{name:<7}{shown:<{width}}{acc:>9.4f}{costs[name]['ms']:>16.2f}"
              f"{costs[name]['saved'] / 2**20:>16.2f} MiB")
    print(f"DARTS / GDAS: {costs['DARTS']['ms'] / costs['GDAS']['ms']:.2f}x time per step, "
          f"{costs['DARTS']['saved'] / costs['GDAS']['saved']:.2f}x memory saved for backward")
    print("GDAS edges as derive_architecture reports them: "
          + ", ".join(f"{k}={v}" for k, v in derive_architecture(gdas).items()))
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
