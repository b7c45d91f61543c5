"""K fusion heads of one architecture run at once with stacked weights and batched matmuls.

:class:`StackedHeads` holds the parameters of K :class:`heads.model.FusionHead` modules as
tensors with a leading K axis (``torch.func.stack_module_state``) and evaluates all of them in
one pass (``torch.baddbmm``). Dropout uses uniform random numbers the caller draws per
configuration, so every configuration can own its random generator.

:class:`BatchedAdamW` is ``torch.optim.AdamW`` itself, given one parameter group per
configuration whose tensors are views into the stacked weights: each configuration has its own
learning rate (and weight decay), and the update runs the fused AdamW kernel where available.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import FusionHead


@dataclass(frozen=True)
class _Layer:
    kind: str  # "dropout" | "linear" | "gelu"
    name: str = ""  # parameter prefix for linear layers ("body.1")
    width: int = 0  # input width for dropout layers


def _layers(template: FusionHead) -> list[_Layer]:
    out: list[_Layer] = []
    width = (template.in_dim if template.uses_h else 0) + (template.prior_dim if template.uses_prior else 0)
    for i, mod in enumerate(template.body):
        if isinstance(mod, nn.Dropout):
            out.append(_Layer("dropout", width=width))
        elif isinstance(mod, nn.Linear):
            out.append(_Layer("linear", name=f"body.{i}"))
            width = mod.out_features
        elif isinstance(mod, nn.GELU):
            out.append(_Layer("gelu"))
        else:  # pragma: no cover - FusionHead builds only these
            raise TypeError(f"StackedHeads cannot run layer {mod!r}")
    return out


class _BatchedLinear(torch.autograd.Function):
    """y = z Wᵀ + b for stacked (K, ·) weights; gradients come out dense in the parameters' layout."""

    @staticmethod
    def forward(ctx, z: Tensor, W: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(z, W)
        return torch.baddbmm(b.unsqueeze(1), z, W.transpose(1, 2))

    @staticmethod
    def backward(ctx, dy: Tensor):
        z, W = ctx.saved_tensors
        dz = torch.bmm(dy, W) if ctx.needs_input_grad[0] else None
        dW = torch.bmm(dy.transpose(1, 2), z) if ctx.needs_input_grad[1] else None
        db = dy.sum(1) if ctx.needs_input_grad[2] else None
        return dz, dW, db


def batched_linear(z: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """Linear layer of K stacked heads: z (K, B, in), W (K, out, in), b (K, out) -> (K, B, out)."""
    return _BatchedLinear.apply(z, W, b)


class StackedHeads:
    """K FusionHeads with identical architecture as stacked parameter tensors (K, ...)."""

    def __init__(self, template: FusionHead, params: dict[str, Tensor]):
        self.template = copy.deepcopy(template).cpu()
        self.params = params
        self.layers = _layers(template)
        self.K = next(iter(params.values())).shape[0]
        self.dropout = template.dropout

    @classmethod
    def from_heads(cls, heads: list[FusionHead], device: str | torch.device = "cpu") -> "StackedHeads":
        if not heads:
            raise ValueError("StackedHeads needs at least one head")
        cfg = heads[0].config()
        for h in heads[1:]:
            if h.config() != cfg:
                raise ValueError(f"heads differ in architecture: {h.config()} vs {cfg}")
        params, _ = torch.func.stack_module_state(heads)
        params = {k: v.detach().to(device).contiguous().requires_grad_(True) for k, v in params.items()}
        return cls(heads[0], params)

    # ------------------------------------------------------------------ views and export
    @property
    def dropout_width(self) -> int:
        """Uniform random numbers one item needs per forward pass in training mode."""
        return sum(layer.width for layer in self.layers if layer.kind == "dropout")

    def n_parameters_per_head(self) -> int:
        return sum(v[0].numel() for v in self.params.values())

    def state_dict(self, k: int) -> dict[str, Tensor]:
        """State dict of head ``k`` (detached CPU copies), loadable into a FusionHead."""
        return {name: v[k].detach().cpu().clone() for name, v in self.params.items()}

    def head(self, k: int) -> FusionHead:
        head = copy.deepcopy(self.template)
        head.load_state_dict(self.state_dict(k))
        return head.eval()

    def snapshot(self) -> dict[str, Tensor]:
        return {name: v.detach().clone() for name, v in self.params.items()}

    def copy_rows_(self, dest: dict[str, Tensor], mask: Tensor) -> None:
        """dest[name][k] = params[name][k] for every k with mask[k] True (best-epoch bookkeeping)."""
        with torch.no_grad():
            for name, v in self.params.items():
                m = mask.view(-1, *([1] * (v.dim() - 1)))
                dest[name].copy_(torch.where(m, v, dest[name]))

    # ------------------------------------------------------------------ forward
    def prior_representation(self, prior: Tensor, missing: Tensor | None) -> Tensor:
        E = self.params["prior_embedding"]  # (K, C, P)
        q = prior.to(E.dtype)
        if missing is not None:
            q = q.masked_fill(missing.unsqueeze(-1), 0.0)
        if q.dim() == 2:
            m = torch.einsum("bc,kcp->kbp", q, E)
        else:
            m = torch.bmm(q, E)
        if "missing_embedding" in self.params and missing is not None:
            v = self.params["missing_embedding"].unsqueeze(1)  # (K, 1, P)
            miss = missing.unsqueeze(-1)
            if miss.dim() == 2:
                miss = miss.unsqueeze(0)
            m = torch.where(miss, v, m)
        return m

    def forward(self, h: Tensor | None, prior: Tensor | None = None, missing: Tensor | None = None,
                uniforms: Tensor | None = None) -> Tensor:
        """Logits (K, B, C).

        ``h``, ``prior``, ``missing`` are (K, B, ·) (one batch per configuration) or (B, ·)
        (the same items for every configuration). ``uniforms`` (K, B, dropout_width) in [0, 1)
        turns dropout on (an element is kept where its uniform ≥ p); None = evaluation mode.
        """
        t = self.template
        parts = []
        if t.uses_h:
            if h is None:
                raise ValueError("h is required")
            parts.append(h if h.dim() == 3 else h.unsqueeze(0).expand(self.K, -1, -1))
        if t.uses_prior:
            if prior is None:
                raise ValueError(f"head preset {t.preset!r} fuses an LLM prior: pass prior")
            parts.append(self.prior_representation(prior, missing))
        z = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        offset, p = 0, self.dropout
        for layer in self.layers:
            if layer.kind == "dropout":
                if uniforms is not None and p > 0:
                    u = uniforms[..., offset:offset + layer.width]
                    z = z * (u >= p).to(z.dtype) * (1.0 / (1.0 - p))
                offset += layer.width
            elif layer.kind == "linear":
                W, b = self.params[layer.name + ".weight"], self.params[layer.name + ".bias"]
                z = batched_linear(z.contiguous() if z.dim() == 3 else z, W, b)
            else:
                z = F.gelu(z)
        return z

    __call__ = forward


class BatchedAdamW:
    """AdamW over stacked weights with one learning rate (and weight decay) per configuration.

    Internally a ``torch.optim.AdamW`` whose K parameter groups hold views ``param[k]`` of the
    stacked tensors; call :meth:`set_grads` after computing gradients of the stacked tensors.
    """

    def __init__(self, params: dict[str, Tensor], lr: Tensor | list[float], weight_decay: float | list[float] = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, fused: bool | None = None):
        self.names = list(params)
        self.stacked = [params[n] for n in self.names]
        K = self.stacked[0].shape[0]
        lrs = [float(x) for x in (lr.tolist() if isinstance(lr, Tensor) else lr)]
        wds = [float(weight_decay)] * K if isinstance(weight_decay, (int, float)) else [float(w) for w in weight_decay]
        if len(lrs) != K or len(wds) != K:
            raise ValueError(f"need {K} learning rates and weight decays, got {len(lrs)} and {len(wds)}")
        # leaf views sharing storage with the stacked tensors
        self.views = [[p.detach()[k] for p in self.stacked] for k in range(K)]
        if fused is None:
            fused = all(p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16) for p in self.stacked)
        groups = [{"params": self.views[k], "lr": lrs[k], "weight_decay": wds[k]} for k in range(K)]
        try:
            self.optimizer = torch.optim.AdamW(groups, betas=betas, eps=eps, fused=bool(fused))
        except (RuntimeError, ValueError):  # fused kernel not available for this device
            self.optimizer = torch.optim.AdamW(groups, betas=betas, eps=eps)
        self.K = K

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def set_lr(self, lrs: list[float]) -> None:
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = float(lr)

    def set_grads(self, grads: list[Tensor]) -> None:
        """Gradients of the stacked tensors, in the order of ``params`` given at construction."""
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]  # the fused kernel wants dense rows
        for k in range(self.K):
            for view, g in zip(self.views[k], grads):
                view.grad = g[k]

    def step(self) -> None:
        self.optimizer.step()


def clip_grad_norms_(grads: list[Tensor], max_norm: float) -> Tensor:
    """Per-configuration ``clip_grad_norm_`` on stacked gradients (K, ...); returns the norms (K,)."""
    per = torch.stack([torch.linalg.vector_norm(g.detach().reshape(g.shape[0], -1), dim=1) for g in grads])
    norms = torch.linalg.vector_norm(per, dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms
