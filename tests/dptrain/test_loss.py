"""dptrain.loss: Eq. 1 against a loop reimplementation, mining, and the queue ring buffer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dptrain.loss import EMPTY, DiffusionPrintLoss, NegativeQueue, mine_hard_negatives


def reference_loss(q, k, bank, bank_cat, anchor_cat, top_k, tau, in_batch):
    """Paper Eq. 1 written as loops (float64), optionally with the authors' in-batch term."""
    total = 0.0
    for i in range(len(q)):
        candidates = sorted(
            (
                float(q[i] @ bank[j])
                for j in range(len(bank))
                if bank_cat[j] not in (EMPTY, anchor_cat[i])
            ),
            reverse=True,
        )
        negatives = candidates[:top_k]
        if in_batch:
            for j in range(len(q)):
                both_authentic = anchor_cat[i] == 0 and anchor_cat[j] == 0
                if j != i and not both_authentic:
                    negatives.append(float(q[i] @ k[j]))
        pos = math.exp(float(q[i] @ k[i]) / tau)
        total += -math.log(pos / (pos + sum(math.exp(n / tau) for n in negatives)))
    return total / len(q)


def random_setup(seed, batch=6, size=40, dim=8, filled=40):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    k = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    category = torch.randint(0, 2, (batch,), generator=g)
    category[:2] = torch.tensor([0, 1])
    bank = F.normalize(torch.randn(filled, dim, generator=g), dim=1)
    bank_cat = torch.randint(0, 2, (filled,), generator=g)
    return q, k, category, bank, bank_cat, size


@pytest.mark.parametrize("in_batch", [False, True])
@pytest.mark.parametrize(("top_k", "filled"), [(5, 40), (16, 40), (30, 12)])
def test_loss_equals_loop_reimplementation(in_batch, top_k, filled):
    q, k, category, bank, bank_cat, size = random_setup(top_k + filled, filled=filled)
    criterion = DiffusionPrintLoss(
        size, 8, top_k=top_k, temperature=0.07, in_batch_negatives=in_batch
    )
    criterion.queue.enqueue(bank, bank_cat, torch.zeros_like(bank_cat))
    out = criterion(q, k, category)
    ref = reference_loss(
        q.double(),
        k.double(),
        bank.double(),
        bank_cat.tolist(),
        category.tolist(),
        top_k,
        0.07,
        in_batch,
    )
    assert abs(out.infonce.item() - ref) < 1e-5
    assert out.loss.item() == out.infonce.item()  # no head


def test_head_cross_entropy_is_weighted():
    q, k, category, bank, bank_cat, size = random_setup(1)
    criterion = DiffusionPrintLoss(size, 8, top_k=4, lambda_cls=0.5)
    criterion.queue.enqueue(bank, bank_cat, torch.zeros_like(bank_cat))
    logits = torch.randn(len(q), 4)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    out = criterion(q, k, category, logits, target)
    torch.testing.assert_close(out.cls, F.cross_entropy(logits, target))
    torch.testing.assert_close(out.loss, out.infonce + 0.5 * out.cls)


def test_gradient_reaches_only_the_anchors():
    q, k, category, bank, bank_cat, size = random_setup(2)
    q.requires_grad_(True)
    k.requires_grad_(True)
    criterion = DiffusionPrintLoss(size, 8, top_k=8, in_batch_negatives=True)
    criterion.queue.enqueue(bank, bank_cat, torch.zeros_like(bank_cat))
    criterion(q, k, category).loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_topk_never_picks_same_category_or_empty_slots():
    q, _, category, bank, bank_cat, _ = random_setup(3, batch=16, filled=20)
    queue = NegativeQueue(32, 8)  # 12 slots stay empty
    bank_cat[:3] = 1  # a few inpainted entries only: fewer than k for authentic anchors
    bank_cat[3:] = 0
    queue.enqueue(bank, bank_cat, bank_cat)
    sims, idx = mine_hard_negatives(q, queue, category, k=10)
    valid = torch.isfinite(sims)
    picked = queue.category[idx]
    assert (picked[valid] != category[:, None].expand_as(idx)[valid]).all()
    assert (picked[valid] != EMPTY).all()
    authentic = category == 0
    # An authentic anchor has exactly 3 opposite-category entries: 3 valid picks, 7 masked.
    assert (valid[authentic].sum(dim=1) == 3).all()
    assert (valid[~authentic].sum(dim=1) == 10).all()
    # And they are the most similar ones.
    for i in range(len(q)):
        allowed = (queue.category != category[i]) & (queue.category != EMPTY)
        best = (q[i] @ queue.embeddings[allowed].T).sort(descending=True).values[: valid[i].sum()]
        torch.testing.assert_close(sims[i][valid[i]], best)


def test_queue_wraps_around():
    queue = NegativeQueue(5, 1)
    queue.enqueue(
        torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([0, 1, 0]), torch.tensor([0, 2, 0])
    )
    assert queue.ptr.item() == 3
    queue.enqueue(
        torch.tensor([[4.0], [5.0], [6.0], [7.0]]),
        torch.tensor([1, 1, 0, 1]),
        torch.tensor([3, 1, 0, 2]),
    )
    # slots 3, 4, 0, 1 receive 4, 5, 6, 7; slot 2 keeps 3
    assert queue.embeddings.flatten().tolist() == [6.0, 7.0, 3.0, 4.0, 5.0]
    assert queue.category.tolist() == [0, 1, 0, 1, 1]
    assert queue.generator.tolist() == [0, 2, 0, 3, 1]
    assert queue.ptr.item() == 2


def test_queue_more_entries_than_slots_keeps_the_newest():
    queue = NegativeQueue(5, 1)
    queue.enqueue(torch.tensor([[1.0], [2.0]]), torch.zeros(2), torch.zeros(2))
    queue.enqueue(torch.arange(10.0, 17.0)[:, None], torch.ones(7), torch.ones(7))
    # As if written one by one from slot 2: 10..16 land in 2,3,4,0,1,2,3 -> the last 5 survive.
    assert queue.embeddings.flatten().tolist() == [13.0, 14.0, 15.0, 16.0, 12.0]
    assert queue.ptr.item() == (2 + 7) % 5
    assert queue.category.tolist() == [1] * 5


def test_empty_queue_slots_start_unminable():
    queue = NegativeQueue(4, 2)
    assert (queue.category == EMPTY).all()
    sims, _ = mine_hard_negatives(torch.ones(1, 2), queue, torch.tensor([0]), k=4)
    assert torch.isneginf(sims).all()
