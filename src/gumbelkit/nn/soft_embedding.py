"""An embedding table that also takes soft (relaxed) tokens."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_int_range

SparseTokens = tuple[torch.Tensor, torch.Tensor]


class SoftEmbedding(nn.Module):
    """``E[ids]`` for token ids, ``y E`` for soft one-hot rows ``y``, and the sparse form.

    Feeding one model's discrete tokens into another differentiably means
    embedding a relaxed token ``y`` (a point on the simplex) as
    ``sum_v y_v E_v`` (Jang et al. 2017). Three inputs are accepted:

    * an integer tensor of ids [...] -> [..., D] (``nn.Embedding``'s lookup);
    * a floating tensor [..., V] of soft one-hot vectors -> ``y @ E``;
    * a pair ``(indices, weights)`` of shape [..., k] each (as returned by
      :func:`gumbelkit.sparse_gumbel_softmax`) -> ``sum_j weights_j E[indices_j]``,
      computed with ``embedding_bag`` in O(k D) memory per position.

    To feed one model's relaxed tokens into another model (for example a
    Hugging Face transformer, through ``inputs_embeds``), use
    :meth:`tied`: it shares that model's table instead of copying it, so a
    frozen model stays frozen and a trained one trains the table it reads.
    Tokens from a different vocabulary ``V'`` enter through a mapping matrix
    ``A`` [V', V] (row ``u`` says which of this table's tokens producer token
    ``u`` stands for; one-hot rows for exact matches, spread rows for a token
    that stands for several): ``emb(y @ A)`` embeds ``y [..., V']`` as
    ``(y A) E``. See docs/token_passing.md.

    Args:
        num_embeddings: vocabulary size V, >= 1.
        embedding_dim: D, >= 1.
        weight: optional initial table [V, D] (copied); else ``N(0, 1)`` like
            ``nn.Embedding``.
        freeze: keep the table fixed (``requires_grad=False``).

    Example:
        >>> emb = gumbelkit.nn.SoftEmbedding(10, 4)
        >>> ids = torch.tensor([3, 7])
        >>> torch.equal(emb(ids), emb(torch.nn.functional.one_hot(ids, 10).float()))
        True
        >>> idx, w = gumbelkit.sparse_gumbel_softmax(torch.randn(2, 10), k=3, seed=0)
        >>> emb((idx, w)).shape
        torch.Size([2, 4])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 weight: torch.Tensor | None = None, freeze: bool = False) -> None:
        super().__init__()
        self.num_embeddings = check_int_range(num_embeddings, "num_embeddings", 1)
        self.embedding_dim = check_int_range(embedding_dim, "embedding_dim", 1)
        if weight is None:
            table = torch.randn(num_embeddings, embedding_dim)
        else:
            if tuple(weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"weight must have shape (num_embeddings, embedding_dim) = "
                                 f"({num_embeddings}, {embedding_dim}), "
                                 f"got {tuple(weight.shape)}")
            table = weight.detach().clone()
        self.weight = nn.Parameter(table, requires_grad=not freeze)
        self.embed_scale = 1.0

    @classmethod
    def from_pretrained(cls, embedding: nn.Embedding | torch.Tensor,
                        freeze: bool = True) -> SoftEmbedding:
        """A soft embedding with a copy of an ``nn.Embedding``'s table (or a [V, D] tensor)."""
        table = embedding.weight if isinstance(embedding, nn.Embedding) else embedding
        if table.dim() != 2:
            raise ValueError(f"an embedding table must be 2-D [V, D], got {tuple(table.shape)}")
        return cls(table.shape[0], table.shape[1], weight=table, freeze=freeze)

    @classmethod
    def tied(cls, embedding: nn.Embedding | nn.Parameter) -> SoftEmbedding:
        """A soft embedding that shares (does not copy) an embedding's table.

        ``embedding`` is an ``nn.Embedding`` (such as a Hugging Face model's
        ``get_input_embeddings()``) or a 2-D ``nn.Parameter`` [V, D]. The
        module's ``weight`` is that very parameter: whether it trains is the
        owner's ``requires_grad``, gradients of soft tokens land in the
        owner's ``.grad``, and updates to it are seen at once. No table is
        copied, which matters for a 50k x 4096 vocabulary. An embedding that
        multiplies its lookup by an ``embed_scale`` attribute (Hugging Face's
        scaled word embeddings: BART, Gemma, ...) is reproduced with that
        factor, so ``tied(e)(ids)`` equals ``e(ids)``: ``inputs_embeds`` skips
        the module, and without it soft tokens would enter unscaled.

        Example:
            >>> table = torch.nn.Embedding(10, 4).requires_grad_(False)
            >>> emb = gumbelkit.nn.SoftEmbedding.tied(table)
            >>> emb.weight is table.weight
            True
            >>> logits = torch.randn(3, 10, requires_grad=True)
            >>> emb(gumbelkit.gumbel_softmax(logits, 0.5, hard=True, seed=0)).sum().backward()
            >>> logits.grad.abs().sum() > 0, table.weight.grad is None
            (tensor(True), True)
        """
        table = embedding.weight if isinstance(embedding, nn.Embedding) else embedding
        if not isinstance(table, nn.Parameter):
            raise TypeError(f"tied needs an nn.Embedding or an nn.Parameter, "
                            f"got {type(embedding).__name__}")
        if table.dim() != 2 or 0 in table.shape:
            raise ValueError(f"an embedding table must be 2-D [V, D] with V, D >= 1, "
                             f"got {tuple(table.shape)}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.num_embeddings, module.embedding_dim = table.shape
        module.weight = table
        scale = getattr(embedding, "embed_scale", 1.0)
        module.embed_scale = float(scale) if scale is not None else 1.0
        if not math.isfinite(module.embed_scale):
            raise ValueError(f"the embedding's embed_scale must be finite, got {scale}")
        return module

    def forward(self, tokens: torch.Tensor | SparseTokens) -> torch.Tensor:
        """Embed ids, soft one-hot vectors or ``(indices, weights)``; see the class docstring."""
        out = self._embed(tokens)
        return out if self.embed_scale == 1.0 else out * self.embed_scale

    def _embed(self, tokens: torch.Tensor | SparseTokens) -> torch.Tensor:
        if isinstance(tokens, tuple):
            return self._sparse(*tokens)
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a tensor or an (indices, weights) pair, "
                            f"got {type(tokens).__name__}")
        if tokens.dtype.is_floating_point:
            if tokens.dim() == 0 or tokens.shape[-1] != self.num_embeddings:
                raise ValueError(f"soft tokens must have shape [..., num_embeddings="
                                 f"{self.num_embeddings}], got {tuple(tokens.shape)}")
            return tokens.to(self.weight.dtype) @ self.weight
        self._check_ids(tokens, "token ids")
        return nn.functional.embedding(tokens, self.weight)

    def _check_ids(self, ids: torch.Tensor, name: str) -> None:
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"{name} must have an integer dtype, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            raise ValueError(f"{name} must lie in [0, {self.num_embeddings - 1}], got values "
                             f"in [{int(ids.min())}, {int(ids.max())}]")

    def _sparse(self, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if indices.shape != weights.shape or indices.dim() == 0:
            raise ValueError(f"sparse tokens need indices and weights of the same shape "
                             f"[..., k], got {tuple(indices.shape)} and {tuple(weights.shape)}")
        if not weights.dtype.is_floating_point:
            raise ValueError(f"sparse token weights must be floating, got {weights.dtype}")
        self._check_ids(indices, "sparse token indices")
        k = indices.shape[-1]
        bags = nn.functional.embedding_bag(indices.reshape(-1, k).long(), self.weight,
                                           mode="sum",
                                           per_sample_weights=weights.reshape(-1, k).to(
                                               self.weight.dtype))
        return bags.reshape(*indices.shape[:-1], self.embedding_dim)

    def extra_repr(self) -> str:
        scale = "" if self.embed_scale == 1.0 else f", embed_scale={self.embed_scale}"
        return (f"{self.num_embeddings}, {self.embedding_dim}, "
                f"freeze={not self.weight.requires_grad}{scale}")
