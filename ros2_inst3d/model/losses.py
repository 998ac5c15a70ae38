"""Loss functions and matching shared by the query- and embedding-based methods.

ISBNet (paper §3.3): dice and BCE mask losses, axis-aligned 3D box gIoU, the one-to-many
matching (each ground truth duplicated ``dup`` times in one Hungarian assignment). MTML (paper
§3.2): the discriminative loss (De Brabandere et al.) on instance embeddings and the cosine
direction loss. Plain torch (scipy for the assignment); shapes in each docstring.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["aabb_giou", "aabb_iou", "dice_cost", "dice_loss", "direction_loss",
           "discriminative_loss", "one_to_many_match"]


def dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, G) dice loss ``1 - (2 p.t + 1) / (sum p + sum t + 1)`` of every prediction against
    every target. logits: (Q, M) mask logits; targets: (G, M) float/bool 0-1 masks."""
    prob = logits.sigmoid()
    t = targets.to(prob.dtype)
    numerator = 2 * prob @ t.T
    denominator = prob.sum(1)[:, None] + t.sum(1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(K,) dice loss of row k of ``logits`` (K, M) against row k of ``targets`` (K, M)."""
    prob = logits.sigmoid()
    t = targets.to(prob.dtype)
    return 1 - (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)


def _volume(box: torch.Tensor) -> torch.Tensor:
    return (box[..., 3:] - box[..., :3]).clamp_min(0).prod(-1)


def aabb_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K,) IoU of paired axis-aligned boxes (K, 6) ``[min xyz, max xyz]`` (metres); 0 when both
    are empty."""
    low = torch.maximum(a[:, :3], b[:, :3])
    high = torch.minimum(a[:, 3:], b[:, 3:])
    inter = (high - low).clamp_min(0).prod(-1)
    union = _volume(a) + _volume(b) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def aabb_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K,) generalised IoU (Rezatofighi et al.) of paired axis-aligned boxes (K, 6):
    ``IoU - (hull - union) / hull`` with hull the smallest box holding both; in [-1, 1]."""
    low = torch.maximum(a[:, :3], b[:, :3])
    high = torch.minimum(a[:, 3:], b[:, 3:])
    inter = (high - low).clamp_min(0).prod(-1)
    union = _volume(a) + _volume(b) - inter
    hull_size = torch.maximum(a[:, 3:], b[:, 3:]) - torch.minimum(a[:, :3], b[:, :3])
    hull = hull_size.clamp_min(0).prod(-1)
    iou = inter / union.clamp_min(1e-12)
    return iou - (hull - union) / hull.clamp_min(1e-12)


def one_to_many_match(cost: torch.Tensor, dup: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ISBNet's one-to-many matching: each of the G targets is repeated ``dup`` times and a
    Hungarian assignment over the (Q, G * dup) cost picks at most ``dup`` predictions per target
    (each prediction at most once; fewer when Q < G * dup).

    cost: (Q, G) float. Returns ``(query (P,), target (P,))`` int64 matched pairs, sorted by
    query.
    """
    from scipy.optimize import linear_sum_assignment

    q, g = cost.shape
    if q == 0 or g == 0 or dup < 1:
        empty = torch.zeros(0, dtype=torch.int64, device=cost.device)
        return empty, empty.clone()
    repeated = cost.detach().float().cpu().numpy()
    repeated = np.nan_to_num(np.tile(repeated, (1, int(dup))), nan=1e6, posinf=1e6)
    rows, cols = linear_sum_assignment(repeated)
    order = np.argsort(rows)
    query = torch.from_numpy(rows[order].astype(np.int64)).to(cost.device)
    target = torch.from_numpy((cols[order] % g).astype(np.int64)).to(cost.device)
    return query, target


def discriminative_loss(embedding: torch.Tensor, instance: torch.Tensor, delta_v: float,
                        delta_d: float, gamma: float = 0.001
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The discriminative loss of MTML / De Brabandere et al. (2017), one batch item.

    embedding: (N, D) float; instance: (N,) int64 instance id per row, negative = none (ignored).
    With C instances of means mu_c:
      variance = 1/C sum_c mean_{i in c} [|mu_c - x_i| - delta_v]_+^2   (pull within delta_v)
      distance = 1/(C(C-1)) sum_{c != c'} [2 delta_d - |mu_c - mu_c'|]_+^2  (push apart)
      regularisation = gamma/C sum_c |mu_c|
    Returns the three terms (scalars; zeros attached to the graph where undefined).
    """
    zero = embedding.sum() * 0
    valid = instance >= 0
    if not bool(valid.any()):
        return zero, zero, zero
    ids, inverse = torch.unique(instance[valid], return_inverse=True)
    x = embedding[valid]
    c = ids.numel()
    counts = torch.bincount(inverse, minlength=c).to(x.dtype)
    means = torch.zeros(c, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, inverse, x)
    means = means / counts[:, None]
    pull = (torch.norm(x - means[inverse], dim=1) - delta_v).clamp_min(0) ** 2
    variance = (torch.zeros(c, dtype=x.dtype, device=x.device).index_add(0, inverse, pull)
                / counts).mean()
    if c > 1:
        # Pairwise distances without cdist (its gradient is NaN at 0 distance).
        diff = means[:, None, :] - means[None, :, :]
        dist = torch.sqrt((diff ** 2).sum(-1) + 1e-12)
        off_diagonal = ~torch.eye(c, dtype=torch.bool, device=x.device)
        push = (2 * delta_d - dist[off_diagonal]).clamp_min(0) ** 2
        distance = push.mean()
    else:
        distance = zero
    regularisation = gamma * means.norm(dim=1).mean()
    return variance, distance, regularisation


def direction_loss(direction: torch.Tensor, offset_target: torch.Tensor,
                   instance: torch.Tensor) -> torch.Tensor:
    """MTML's direction loss (paper eq. 5): ``-1/C sum_c 1/N_c sum_{i in c} cos(v_i, v_i^GT)``.

    direction: (N, 3) predicted vectors (normalised here); offset_target: (N, 3) vector from
    the row to its instance centre (the direction it should point in); instance: (N,) int64
    instance id, negative = none (ignored). 0 (attached) without instance rows.
    """
    valid = instance >= 0
    if not bool(valid.any()):
        return direction.sum() * 0
    pred = F.normalize(direction[valid], dim=1, eps=1e-8)
    target = F.normalize(offset_target[valid].to(pred.dtype), dim=1, eps=1e-8)
    cosine = (pred * target).sum(1)
    _, inverse = torch.unique(instance[valid], return_inverse=True)
    c = int(inverse.max()) + 1
    per_instance = torch.zeros(c, dtype=cosine.dtype, device=cosine.device).index_add(
        0, inverse, cosine) / torch.bincount(inverse, minlength=c).to(cosine.dtype)
    return -per_instance.mean()
