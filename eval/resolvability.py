"""Is the answer resolvable only at high resolution? An oracle-location probe per view.

For each question the probe is told where the asked-about item is and sees one view of it: the
global thumbnail's token over the item's cell, or the item's region encoded at one level
(mean of its tokens). A multinomial logistic regression per question kind (shape: 3 classes,
colour: 8) is fitted on the train split and scored on the test split. If the thumbnail's token
answers as well as the top level, the scenes cannot tell allocation policies apart; the benchmark
needs the gap. The probe is not the reader: it is handed the location, so it measures what the
tokens carry, not whether a reader learns to find it.
"""
from __future__ import annotations

import torch

__all__ = ["view_features", "probe_accuracy", "resolvability"]


def view_features(cache, targets, view) -> torch.Tensor:
    """(Q, D) features of each question's target under ``view``: "thumbnail" (the global token
    whose quadrant holds the target cell) or a level (mean of the target region's tokens)."""
    cell = torch.tensor([t[0] for t in targets])  # (Q,)
    scenes = cache.scene_of
    if view == "thumbnail":
        g = int(round(cache.global_tokens.shape[1] ** 0.5))
        G = int(round(cache.region_features.shape[1] ** 0.5))
        row, col = (cell // G) * g // G, (cell % G) * g // G
        return cache.global_tokens[scenes, row * g + col].float()  # (Q, D)
    return cache.region_tokens[view][scenes, cell].float().mean(1)  # (Q, D)


def probe_accuracy(x_train, y_train, x_test, y_test, classes: int, steps: int = 300, l2: float = 1e-3,
                   seed: int = 0) -> float:
    """Test accuracy of an L2-regularised softmax regression fitted by L-BFGS on standardised features."""
    mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xtr, xte = (x_train - mu) / sd, (x_test - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(xtr.shape[1], classes, generator=g)).requires_grad_()
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, y_train) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == y_test).float().mean())


def resolvability(train, test, levels) -> dict:
    """train / test: (cache, scenes) pairs. Returns {kind: {view: test accuracy}} plus chance."""
    from .easyvqa_scenes import COLOURS, SHAPES

    def rows(cache, scenes):
        qs = [q for sc in scenes for q in sc.questions]
        return qs, [q[2] for q in qs]

    (ctr, str_), (cte, ste) = train, test
    qtr, ttr = rows(ctr, str_)
    qte, tte = rows(cte, ste)
    out = {}
    for kind, names in (("shape", SHAPES), ("colour", COLOURS)):
        itr = [i for i, q in enumerate(qtr) if q[3] == kind]
        ite = [i for i, q in enumerate(qte) if q[3] == kind]
        if len(itr) < 10 or len(ite) < 5:
            continue
        ytr = torch.tensor([names.index(qtr[i][1]) for i in itr])
        yte = torch.tensor([names.index(qte[i][1]) for i in ite])
        res = {"questions_train": len(itr), "questions_test": len(ite),
               "majority": float((yte == torch.bincount(ytr, minlength=len(names)).argmax()).float().mean())}
        for view in ["thumbnail"] + list(levels):
            xtr = view_features(ctr, ttr, view)[itr]
            xte = view_features(cte, tte, view)[ite]
            res[str(view)] = probe_accuracy(xtr, ytr, xte, yte, len(names))
        out[kind] = res
    return out
