"""The three relevance scorers (DESIGN.md section 2, step 3), tensor in, tensor out, batched.

information (propositional): Shannon entropy of the region
    pixel_entropy     entropy of the region's grey-level histogram (soft histogram: each pixel is
                      split linearly between its two nearest bin centres, so the entropy is
                      differentiable in the pixels), normalised by log(bins) to [0, 1]
    feature_entropy   entropy of softmax(feature / T) over the feature dims, normalised by log(D)
salience (perspectival, no query)
    centre_surround   1 - cos(region feature, surround feature), averaged over two surrounds: the
                      8-neighbour mean on the grid (when R == grid**2) and the mean of all other regions
    spectral_residual spectral-residual saliency (Hou & Zhang 2007): log-amplitude minus its 3x3 local
                      mean, back-transformed with the original phase, squared, blurred; computed on
                      the image re-assembled from the grid crops (row-major) when R == grid**2 and
                      pooled per cell; without that layout, the mean squared difference between a
                      crop's log-amplitude spectrum and the image's average crop spectrum
query (participatory)
    QueryScorer       multi-head cross-attention logits of the query tokens over the region features
                      with learnable projections, mean-pooled over valid query tokens -> (B, R, H),
                      then a learnable output projection over heads -> (B, R). Its last-layer Laplace
                      posterior gives a score-space covariance factor (epistemic uncertainty).

``standardize`` z-scores a channel over the regions of each image before it enters the posterior:
scorers with unrelated units become comparable without training, and the posterior sees where a
region stands within its image (not how the image compares to other images).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arrcoc.bayes._validate import check_int, check_real
from arrcoc.bayes.laplace import factor_precision

from ._validate import all_finite, check_features, check_pixels, check_values

__all__ = [
    "grey_entropy", "grey_spectral_saliency",
    "pixel_entropy", "feature_entropy", "centre_surround_contrast", "spectral_residual_map",
    "spectral_residual_saliency", "standardize", "grid_adjacency",
    "InformationScorer", "SalienceScorer", "QueryScorer", "QueryScore",
]


# ----------------------------------------------------------------------------- information

def pixel_entropy(region_pixels: Tensor, bins: int = 32, soft: bool = True,
                  max_pixels: int | None = None) -> Tensor:
    """Normalised Shannon entropy of each region's grey-level histogram: (B, R, C, h, w) -> (B, R).

    Grey levels are min-max scaled per image (over all its regions; the scale is detached), so the
    score does not depend on the pixel normalisation used upstream. max_pixels: if set, regions are
    subsampled with a stride so that at most that many pixels per region enter the histogram.
    """
    check_pixels(region_pixels)
    return grey_entropy(region_pixels.mean(2), bins, soft, max_pixels, validate=False)


def _check_max_pixels(max_pixels):
    return None if max_pixels is None else check_int(max_pixels, "max_pixels", minimum=1)


def grey_entropy(region_grey: Tensor, bins: int = 32, soft: bool = True, max_pixels: int | None = None,
                 validate: bool = True) -> Tensor:
    """``pixel_entropy`` on grey regions (B, R, h, w). validate=False: the caller has checked
    region_grey (finite, floating; as ``pixel_entropy`` and ``RelevanceAllocator.forward`` do)."""
    bins = check_int(bins, "bins", minimum=2)
    max_pixels = _check_max_pixels(max_pixels)
    if validate:
        check_values(region_grey, "region_grey", "(B, R, h, w)", 4)
    h, w = region_grey.shape[-2:]
    if max_pixels is not None and h * w > max_pixels:
        stride = math.ceil(math.sqrt(h * w / max_pixels))  # same stride in both directions
        region_grey = region_grey[..., ::stride, ::stride]
    B, R = region_grey.shape[:2]
    grey = region_grey.reshape(B, R, -1)  # (B, R, n)
    lo = grey.detach().amin((1, 2), keepdim=True)
    hi = grey.detach().amax((1, 2), keepdim=True)
    x = ((grey - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)  # (B, R, n)
    hist = grey.new_zeros(B, R, bins)
    base = (torch.arange(B * R, device=grey.device) * bins).view(B, R, 1)  # (B, R, 1) flat bin offsets
    if soft:
        pos = x * (bins - 1)  # bin-centre coordinates
        left = pos.detach().long().clamp(max=bins - 2)  # (B, R, n); pos >= 0 so long() floors
        frac = pos - left.to(pos.dtype)
        if torch.is_grad_enabled() and frac.requires_grad:
            hist = hist.scatter_add(-1, left, 1 - frac).scatter_add(-1, left + 1, frac)
        else:  # same numbers, several times faster on CPU (bincount has no autograd)
            idx = (base + left).reshape(-1)
            hist = (torch.bincount(idx, (1 - frac).reshape(-1), minlength=B * R * bins)
                    + torch.bincount(idx + 1, frac.reshape(-1), minlength=B * R * bins)).view(B, R, bins)
            hist = hist.to(grey.dtype)
    else:
        idx = (x.detach() * bins).long().clamp(max=bins - 1)
        hist = torch.bincount((base + idx).reshape(-1), minlength=B * R * bins).view(B, R, bins).to(grey.dtype)
    p = hist / hist.sum(-1, keepdim=True)  # (B, R, bins)
    # p * log(max(p, tiny)): equals xlogy(p, p) but keeps the gradient finite at empty bins
    return -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1) / math.log(bins)  # (B, R)


def feature_entropy(region_features: Tensor, temperature: float = 1.0, validate: bool = True) -> Tensor:
    """Normalised entropy of softmax(feature / T) over feature dims: (B, R, D) -> (B, R).
    validate=False: the caller has checked region_features (as ``RelevanceAllocator.forward`` does)."""
    temperature = check_real(temperature, "temperature", low=0.0, low_open=True)
    if validate:
        check_features(region_features)
    D = region_features.shape[-1]
    if D < 2:
        return region_features.new_zeros(region_features.shape[:2])
    logp = torch.log_softmax(region_features / temperature, dim=-1)  # (B, R, D)
    return -(logp.exp() * logp).sum(-1) / math.log(D)


# ----------------------------------------------------------------------------- salience

def grid_adjacency(grid: int, device=None, dtype=torch.float32) -> Tensor:
    """8-neighbour adjacency of a grid x grid layout in row-major order: (R, R), R = grid**2."""
    grid = check_int(grid, "grid", minimum=1)
    ij = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1).reshape(-1, 2)
    cheb = (ij[:, None, :] - ij[None, :, :]).abs().amax(-1)  # (R, R) Chebyshev distance
    return (cheb == 1).to(device=device, dtype=dtype)


def centre_surround_contrast(region_features: Tensor, grid: int | None = None, validate: bool = True) -> Tensor:
    """1 - cos(f_i, surround_i): (B, R, D) -> (B, R). Surround = mean of the other regions, averaged
    with the 8-neighbour mean when R == grid**2 (grid layout, row-major). validate as in feature_entropy."""
    grid = None if grid is None else check_int(grid, "grid", minimum=1)
    if validate:
        check_features(region_features)
    f = region_features
    B, R, D = f.shape
    if R == 1:
        return f.new_zeros(B, R)
    others = (f.sum(1, keepdim=True) - f) / (R - 1)  # (B, R, D)
    contrast = 1 - F.cosine_similarity(f, others, dim=-1, eps=1e-8)  # (B, R)
    if grid is not None and grid > 1 and R == grid * grid:
        A = grid_adjacency(grid, f.device, f.dtype)  # (R, R)
        neigh = (A @ f) / A.sum(-1)[None, :, None]  # (B, R, D)
        contrast = 0.5 * (contrast + 1 - F.cosine_similarity(f, neigh, dim=-1, eps=1e-8))
    return contrast


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Circular Gaussian blur of std sigma pixels, applied in the Fourier domain: (N, H, W)."""
    H, W = x.shape[-2:]
    fy = torch.fft.fftfreq(H, device=x.device, dtype=x.dtype)
    fx = torch.fft.rfftfreq(W, device=x.device, dtype=x.dtype)
    gain = torch.exp(-2 * (math.pi * sigma) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2))  # (H, W//2+1)
    return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=(H, W))


def spectral_residual_map(grey: Tensor, blur: float = 2.5, validate: bool = True) -> Tensor:
    """Spectral-residual saliency map of grey images (N, H, W) -> (N, H, W) (unnormalised).

    The FFT treats the image as periodic, so jumps between opposite borders read as structure.
    validate=False: grey (and blur) already checked by the caller."""
    if validate:
        blur = check_real(blur, "blur", low=0.0)
        check_values(grey, "grey", "(N, H, W)", 3)
    low = grey.dtype in (torch.bfloat16, torch.float16)  # torch's FFT has no half-precision CPU kernel
    out_dtype, grey = grey.dtype, (grey.float() if low else grey)
    spec = torch.fft.fft2(grey)
    amp = spec.abs()
    log_amp = torch.log(amp + 1e-6 * amp.amax((-1, -2), keepdim=True) + 1e-30)  # (N, H, W) relative floor
    local = F.avg_pool2d(F.pad(log_amp[:, None], (1, 1, 1, 1), mode="circular"), 3, stride=1)[:, 0]
    sal = torch.fft.ifft2(torch.polar(torch.exp(log_amp - local), spec.angle())).abs() ** 2
    return _gaussian_blur(sal, blur).to(out_dtype)


def _resize(x: Tensor, size: int) -> Tensor:
    """(N, h, w) -> (N, size, size): area averaging when shrinking (keeps periodic content periodic),
    bilinear when enlarging."""
    mode = "area" if size <= min(x.shape[-2:]) else "bilinear"
    kw = {} if mode == "area" else dict(align_corners=False)
    return F.interpolate(x[:, None], size=(size, size), mode=mode, **kw)[:, 0]


def spectral_residual_saliency(region_pixels: Tensor, grid: int | None = None, size: int = 64,
                               blur: float = 2.5) -> Tensor:
    """Spectral-residual saliency per region: (B, R, C, h, w) -> (B, R). See the module docstring."""
    check_pixels(region_pixels)
    return grey_spectral_saliency(region_pixels.mean(2), grid, size, blur, validate=False)


def grey_spectral_saliency(grey: Tensor, grid: int | None = None, size: int = 64, blur: float = 2.5,
                           validate: bool = True) -> Tensor:
    """``spectral_residual_saliency`` on grey regions (B, R, h, w). validate=False: the caller has
    checked grey (as ``spectral_residual_saliency`` and ``RelevanceAllocator.forward`` do)."""
    grid = None if grid is None else check_int(grid, "grid", minimum=1)
    size = check_int(size, "size", minimum=1)
    blur = check_real(blur, "blur", low=0.0)
    if validate:
        check_values(grey, "grey", "(B, R, h, w)", 4)
    B, R, h, w = grey.shape
    if grid is not None and R == grid * grid:
        mosaic = grey.reshape(B, grid, grid, h, w).permute(0, 1, 3, 2, 4).reshape(B, grid * h, grid * w)
        img = _resize(mosaic, size)  # (B, size, size)
        sal = spectral_residual_map(img, blur, validate=False)  # (B, size, size)
        return F.adaptive_avg_pool2d(sal[:, None], (grid, grid))[:, 0].reshape(B, R)
    # no layout: a crop is salient when its log-amplitude spectrum departs from the image's average
    # crop spectrum (the spectral residual taken across crops instead of across frequencies)
    side = max(8, size // max(1, int(math.isqrt(R))))
    crops = _resize(grey.reshape(B * R, h, w), side)  # (B*R, side, side)
    crops = crops - crops.mean((-1, -2), keepdim=True)  # drop DC: brightness is not structure
    amp = torch.fft.fft2(crops).abs().reshape(B, R, side, side)
    log_amp = torch.log(amp + 1e-6 * amp.amax((1, 2, 3), keepdim=True) + 1e-30)  # (B, R, side, side)
    resid = log_amp - log_amp.mean(1, keepdim=True)
    return resid.pow(2).mean((-1, -2))  # (B, R)


# ----------------------------------------------------------------------------- standardisation

def standardize(scores: Tensor, eps: float = 1e-6, validate: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """z-score (B, R) over regions: returns (z, loc (B,), scale (B,)). A constant channel gives z = 0
    (scale is floored at eps). validate=False: the caller has checked scores (the allocator checks
    all channels at once)."""
    if validate:
        check_values(scores, "scores", "(B, R)", 2)
        if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < float("inf")):
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    loc = scores.mean(-1)  # (B,)
    scale = scores.std(-1, unbiased=False).clamp_min(eps) if scores.shape[-1] > 1 \
        else torch.full_like(loc, eps)
    return (scores - loc[:, None]) / scale[:, None], loc, scale


# ----------------------------------------------------------------------------- modules

class InformationScorer(nn.Module):
    """Entropy scores (no parameters): pixel histogram entropy and feature-distribution entropy."""

    def __init__(self, bins: int = 32, soft: bool = True, temperature: float = 1.0,
                 max_pixels: int | None = 256):
        super().__init__()
        if not isinstance(soft, bool):
            raise TypeError(f"soft must be a bool, got {type(soft).__name__} {soft!r}")
        self.bins, self.soft = check_int(bins, "bins", minimum=2), soft
        self.temperature = check_real(temperature, "temperature", low=0.0, low_open=True)
        self.max_pixels = _check_max_pixels(max_pixels)

    def forward(self, region_features: Tensor, region_pixels: Tensor | None = None, *,
                region_grey: Tensor | None = None, validate: bool = True) -> dict[str, Tensor]:
        """Scores (B, R) by channel name; region_grey (B, R, h, w), if given, is used in place of
        region_pixels' channel mean. validate=False: inputs already checked."""
        out = {"information_feature": feature_entropy(region_features, self.temperature, validate)}
        grey_checked = not validate
        if region_grey is None and region_pixels is not None:
            region_grey, grey_checked = check_pixels(region_pixels).mean(2), True
        if region_grey is not None:
            out["information_pixel"] = grey_entropy(region_grey, self.bins, self.soft, self.max_pixels,
                                                    validate=not grey_checked)
        return out


class SalienceScorer(nn.Module):
    """Query-free contrast scores (no parameters): centre-surround and spectral residual."""

    def __init__(self, grid: int | None = 4, size: int = 64, blur: float = 2.5):
        super().__init__()
        self.grid = None if grid is None else check_int(grid, "grid", minimum=1)
        self.size = check_int(size, "size", minimum=1)
        self.blur = check_real(blur, "blur", low=0.0)

    def forward(self, region_features: Tensor, region_pixels: Tensor | None = None, *,
                region_grey: Tensor | None = None, validate: bool = True) -> dict[str, Tensor]:
        """Scores (B, R) by channel name; region_grey and validate as in InformationScorer.forward."""
        out = {"salience_contrast": centre_surround_contrast(region_features, self.grid, validate)}
        grey_checked = not validate
        if region_grey is None and region_pixels is not None:
            region_grey, grey_checked = check_pixels(region_pixels).mean(2), True
        if region_grey is not None:
            out["salience_spectral"] = grey_spectral_saliency(region_grey, self.grid, self.size, self.blur,
                                                              validate=not grey_checked)
        return out


class QueryScore(NamedTuple):
    score: Tensor       # (B, R) pooled attention logit (zeros where the query is absent)
    cov_factor: Tensor  # (B, R, H) score-space covariance factor from the head's Laplace posterior
    present: Tensor     # (B,) bool: the image has at least one valid query token
    head_logits: Tensor  # (B, R, H) pooled per-head logits (the last layer's inputs)


class QueryScorer(nn.Module):
    """Multi-head cross-attention of query tokens over regions; score = projected pooled logit.

    The output projection over heads (the "query head", weights w of shape (H,)) has a last-layer
    Laplace posterior N(w_hat, L L^T) (buffer ``head_cov_chol``; prior-only N(0, I/prior_precision)
    until ``set_head_covariance``), so Cov(score) = Phi L L^T Phi^T and ``cov_factor`` = Phi L.
    The bias is left out of the Laplace posterior: a shared shift of every region's score is
    removed by per-image standardisation. At initialisation, when query_dim == feature_dim, the
    key projection copies the query projection so the logits start as a (random-projection)
    similarity between query tokens and regions, and the output projection averages the heads.
    """

    def __init__(self, feature_dim: int, query_dim: int | None = None, num_heads: int = 8,
                 head_dim: int = 32, prior_precision: float = 1.0):
        super().__init__()
        feature_dim = check_int(feature_dim, "feature_dim", minimum=1)
        query_dim = feature_dim if query_dim is None else check_int(query_dim, "query_dim", minimum=1)
        num_heads = check_int(num_heads, "num_heads", minimum=1)
        head_dim = check_int(head_dim, "head_dim", minimum=1)
        prior_precision = check_real(prior_precision, "prior_precision", low=0.0, low_open=True)
        self.feature_dim, self.query_dim = feature_dim, query_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.norm_q = nn.LayerNorm(query_dim)
        self.norm_k = nn.LayerNorm(feature_dim)
        self.q_proj = nn.Linear(query_dim, num_heads * head_dim)
        self.k_proj = nn.Linear(feature_dim, num_heads * head_dim)
        self.out = nn.Linear(num_heads, 1)
        with torch.no_grad():
            if query_dim == feature_dim:
                self.k_proj.weight.copy_(self.q_proj.weight)
                self.k_proj.bias.copy_(self.q_proj.bias)
            self.out.weight.fill_(1.0 / num_heads)
            self.out.bias.zero_()
        self.register_buffer("head_cov_chol", torch.eye(num_heads) / math.sqrt(prior_precision))

    def set_head_covariance(self, cov: Tensor) -> None:
        """Install the Laplace posterior covariance (H, H) of the output projection's weights."""
        H = self.num_heads
        if not isinstance(cov, Tensor) or cov.shape != (H, H) or not torch.isfinite(cov).all():
            raise ValueError(f"cov must be a finite tensor of shape ({H}, {H})")
        chol, _ = factor_precision(0.5 * (cov + cov.T), what="query head covariance")  # raises if not PD
        self.head_cov_chol.copy_(chol.to(self.head_cov_chol))

    def check_query(self, query_embeds, query_mask, batch: int, finite: bool = True) -> Tensor:
        """Validate query_embeds (B, T, query_dim) and query_mask ((B, T) bool or None); returns the mask."""
        if not isinstance(query_embeds, Tensor) or not query_embeds.is_floating_point() \
                or query_embeds.dim() != 3 or query_embeds.shape[0] != batch:
            raise ValueError(f"query_embeds must be a floating-point tensor of shape ({batch}, T, {self.query_dim}), "
                             f"got {tuple(getattr(query_embeds, 'shape', ()))}")
        T = query_embeds.shape[1]
        if query_embeds.shape[2] != self.query_dim:
            raise ValueError(f"query_embeds last dim must be query_dim={self.query_dim}, got {query_embeds.shape[2]}")
        if query_mask is None:
            query_mask = torch.ones(batch, T, dtype=torch.bool, device=query_embeds.device)
        if not isinstance(query_mask, Tensor) or query_mask.dtype != torch.bool or query_mask.shape != (batch, T):
            raise ValueError(f"query_mask must be a bool tensor of shape ({batch}, {T})")
        if finite and not all_finite(query_embeds) and not torch.isfinite(query_embeds[query_mask]).all():
            raise ValueError("query_embeds contains NaN or inf at valid (unmasked) tokens")
        return query_mask

    def head_logits(self, region_features: Tensor, query_embeds: Tensor, query_mask: Tensor
                    ) -> tuple[Tensor, Tensor]:
        """Pooled per-head attention logits (B, R, H) and the present flag (B,) (inputs trusted)."""
        B, R, _ = region_features.shape
        T = query_embeds.shape[1]
        H, dh = self.num_heads, self.head_dim
        qe = torch.where(query_mask[..., None], query_embeds, torch.zeros_like(query_embeds))
        q = self.q_proj(self.norm_q(qe)).view(B, T, H, dh)  # (B, T, H, dh)
        k = self.k_proj(self.norm_k(region_features)).view(B, R, H, dh)  # (B, R, H, dh)
        logits = torch.einsum("bthd,brhd->brht", q, k) / math.sqrt(dh)  # (B, R, H, T)
        w = query_mask.to(logits.dtype)  # (B, T)
        count = w.sum(-1)  # (B,)
        pooled = (logits * w[:, None, None, :]).sum(-1) / count.clamp_min(1)[:, None, None]  # (B, R, H)
        return pooled, count > 0

    def compute(self, region_features: Tensor, query_embeds: Tensor | None, query_mask: Tensor | None
                ) -> QueryScore:
        """:meth:`forward` on trusted inputs (query_mask may be None = every token valid)."""
        B, R, _ = region_features.shape
        H = self.num_heads
        if query_embeds is None:
            z = region_features.new_zeros(B, R)
            return QueryScore(z, region_features.new_zeros(B, R, H),
                              torch.zeros(B, dtype=torch.bool, device=region_features.device),
                              region_features.new_zeros(B, R, H))
        if query_mask is None:
            query_mask = torch.ones(query_embeds.shape[:2], dtype=torch.bool, device=query_embeds.device)
        wdt = self.q_proj.weight.dtype
        phi, present = self.head_logits(region_features.to(wdt), query_embeds.to(wdt), query_mask)
        score = self.out(phi).squeeze(-1) * present[:, None]  # (B, R)
        factor = (phi @ self.head_cov_chol.to(phi)) * present[:, None, None]  # (B, R, H)
        dt = region_features.dtype
        return QueryScore(score.to(dt), factor.to(dt), present, phi.to(dt))

    def forward(self, region_features: Tensor, query_embeds: Tensor | None = None,
                query_mask: Tensor | None = None) -> QueryScore:
        check_features(region_features)
        if query_embeds is not None:
            query_mask = self.check_query(query_embeds, query_mask, region_features.shape[0])
        return self.compute(region_features, query_embeds, query_mask)
