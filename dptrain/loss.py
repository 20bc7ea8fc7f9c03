"""The contrastive objective: a category-tagged queue, top-k opposite-category mining, InfoNCE.

Paper Eq. 1, for an anchor q with positive k+ and its hard negatives N_k(q)::

    L_q = -log( exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_{n in N_k(q)} exp(q.n / tau)) )

N_k(q) are the k queue entries of the opposite category (authentic vs inpainted) most similar
to q. The queue holds momentum-encoder embeddings of the hard-negative pool only (never batch
keys), as in the authors' code. With ``in_batch_negatives`` the batch's other keys join the
denominator as the authors' code does, except authentic-authentic pairs (two real patches
share no generator trace, so pushing them apart would fight the objective).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

#: Category of an empty queue slot: never mined (the authors' zero init counts as authentic).
EMPTY = -1
AUTHENTIC = 0


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0 (no gradient); identity without DDP.

    The result is in rank order, so every process gets the same tensor.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class NegativeQueue(nn.Module):
    """Ring buffer of embeddings with their category and generator label.

    Buffers (saved in the state dict, so checkpoints resume it exactly): ``embeddings``
    (N, D), ``category`` (N,) with `EMPTY` for unused slots, ``generator`` (N,), ``ptr`` ().

    Args:
        size: N, number of slots (paper: 65,536).
        dim: D, embedding size.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("category", torch.full((size,), EMPTY, dtype=torch.long))
        self.register_buffer("generator", torch.full((size,), EMPTY, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, category: torch.Tensor, generator: torch.Tensor) -> None:
        """Write entries at the pointer, wrapping around; the oldest are overwritten.

        With several processes, call `concat_all_gather` first so every queue gets the same
        entries in the same order.

        Args:
            keys: (n, D) embeddings (cast to the queue's dtype).
            category: (n,) 0 authentic / 1 inpainted.
            generator: (n,) generator ClassLabel ids.
        """
        n = keys.shape[0]
        if n > self.size:  # only the newest `size` entries would survive anyway
            keys, category, generator = (
                keys[-self.size :],
                category[-self.size :],
                generator[-self.size :],
            )
            self.ptr.add_(n - self.size).remainder_(self.size)
            n = self.size
        idx = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.size
        self.embeddings[idx] = keys.to(self.embeddings.dtype)
        self.category[idx] = category.to(torch.long)
        self.generator[idx] = generator.to(torch.long)
        self.ptr.add_(n).remainder_(self.size)


def mine_hard_negatives(
    q: torch.Tensor, queue: NegativeQueue, anchor_category: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k most similar queue entries of the opposite category, per anchor.

    Entries of the anchor's own category and empty slots get similarity -inf before `topk`,
    so when fewer than k opposite-category entries exist the surplus picks are -inf (they
    drop out of the softmax) instead of same-category entries (the authors' code's bug).

    Args:
        q: (B, D) anchor embeddings.
        queue: the queue.
        anchor_category: (B,) 0 / 1.
        k: number of negatives (clipped to the queue size).

    Returns:
        ``(sims, idx)``: (B, k) similarities, -inf where no valid entry was left, and the
        (B, k) queue indices they came from.
    """
    sims = q @ queue.embeddings.to(q.dtype).T  # (B, N)
    same = queue.category[None, :] == anchor_category[:, None]
    invalid = same | (queue.category[None, :] == EMPTY)
    sims = sims.masked_fill(invalid, float("-inf"))
    return sims.topk(min(k, queue.size), dim=1)


@dataclass
class LossOutput:
    """What one step's objective produced. ``loss`` is differentiable; the rest are detached.

    Attributes:
        loss: total loss, InfoNCE + lambda_cls * head cross-entropy.
        infonce: InfoNCE (Eq. 1), mean over anchors.
        cls: head cross-entropy (0 when there is no head).
        cls_acc: head accuracy on the batch (0 when there is no head).
        pos_sim: mean q.k+.
        neg_sim: mean similarity of the mined negatives (valid ones).
        top1: fraction of anchors whose positive beats every negative.
    """

    loss: torch.Tensor
    infonce: torch.Tensor
    cls: torch.Tensor
    cls_acc: torch.Tensor
    pos_sim: torch.Tensor
    neg_sim: torch.Tensor
    top1: torch.Tensor

    def metrics(self) -> dict[str, torch.Tensor]:
        """The scalars to log, still on device (one host sync when converted together)."""
        return {name: getattr(self, name).detach() for name in self.__dataclass_fields__}


class DiffusionPrintLoss(nn.Module):
    """InfoNCE with top-k opposite-category queue negatives, plus the generator head's CE.

    Holds the `NegativeQueue`. Computed in float32 whatever the autocast dtype.

    Args:
        queue_size: N.
        dim: embedding size D.
        top_k: k hard negatives per anchor (paper: 512).
        temperature: tau (paper: 0.07).
        in_batch_negatives: add the other keys of the batch as negatives, masking
            authentic-anchor / authentic-key pairs (the authors' code). Off by default: Eq. 1
            has only the mined negatives.
        lambda_cls: weight of the head's cross-entropy.
    """

    def __init__(
        self,
        queue_size: int,
        dim: int,
        top_k: int = 512,
        temperature: float = 0.07,
        in_batch_negatives: bool = False,
        lambda_cls: float = 1.0,
    ) -> None:
        super().__init__()
        self.queue = NegativeQueue(queue_size, dim)
        self.top_k = top_k
        self.temperature = temperature
        self.in_batch_negatives = in_batch_negatives
        self.lambda_cls = lambda_cls

    def logits(self, q: torch.Tensor, k: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """``[l_pos, l_batch?, l_hard] / tau``, (B, 1 [+ B] + k); masked entries are -inf.

        Args:
            q: (B, D) anchors (online encoder), unit norm.
            k: (B, D) their positives (momentum encoder), unit norm.
            category: (B,) the anchors' category (a positive shares it).
        """
        q, k = q.float(), k.float()
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        l_hard, _ = mine_hard_negatives(q, self.queue, category, self.top_k)  # (B, k)
        parts = [l_pos]
        if self.in_batch_negatives:
            l_batch = q @ k.T  # (B, B)
            authentic = category == AUTHENTIC
            mask = torch.eye(len(q), dtype=torch.bool, device=q.device)
            mask |= authentic[:, None] & authentic[None, :]
            parts.append(l_batch.masked_fill(mask, float("-inf")))
        parts.append(l_hard)
        return torch.cat(parts, dim=1) / self.temperature

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        category: torch.Tensor,
        class_logits: torch.Tensor | None = None,
        class_target: torch.Tensor | None = None,
    ) -> LossOutput:
        """The step's loss. Call after this step's pool keys are enqueued.

        Args:
            q: (B, D) anchors, unit norm.
            k: (B, D) positives, unit norm, no gradient.
            category: (B,) 0 authentic / 1 inpainted.
            class_logits: (B, n_classes) from `dptrain.head.GeneratorHead`, or None.
            class_target: (B,) the head's targets, given with ``class_logits``.
        """
        logits = self.logits(q, k.detach(), category)
        target = torch.zeros(len(q), dtype=torch.long, device=q.device)
        infonce = F.cross_entropy(logits, target)
        with torch.no_grad():
            pos = logits[:, 0] * self.temperature
            negs = logits[:, -min(self.top_k, self.queue.size) :] * self.temperature
            valid = torch.isfinite(negs)
            neg_sim = torch.where(valid, negs, 0).sum() / valid.sum().clamp(min=1)
            top1 = (logits.argmax(dim=1) == 0).float().mean()
        zero = torch.zeros((), device=q.device)
        cls, cls_acc = zero, zero
        if class_logits is not None:
            cls = F.cross_entropy(class_logits.float(), class_target)
            cls_acc = (class_logits.argmax(dim=1) == class_target).float().mean()
        return LossOutput(
            loss=infonce + self.lambda_cls * cls,
            infonce=infonce,
            cls=cls,
            cls_acc=cls_acc,
            pos_sim=pos.mean(),
            neg_sim=neg_sim,
            top1=top1,
        )
