"""AdamW over stacked (K, ...) weights: one learning rate and weight decay per configuration.

:class:`BatchedAdamW` updates row k of every tensor as ``torch.optim.AdamW`` would with one
parameter group per configuration whose tensor is a row (view) of the stacked weights; on a CPU
or CUDA device it runs PyTorch's fused AdamW kernel once per configuration instead.
:func:`clip_grad_norms_` is ``clip_grad_norm_`` per configuration on stacked gradients. Used by
the stacked trainer (:mod:`heads.training`) on the flat buffer of :class:`heads.stacked.StackedHeads`.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchedAdamW:
    """AdamW over stacked weights with one learning rate (and weight decay) per configuration.

    ``params`` is the flat (K, P) buffer of :class:`StackedHeads` or a dict of (K, ...)
    tensors; row k of every tensor belongs to configuration k. The update is the one of
    ``torch.optim.AdamW`` (default betas, eps 1e-8, decoupled weight decay; tested against it):
    on CPU and CUDA it calls PyTorch's fused AdamW kernel once per configuration on views of the
    rows (one pass over parameters, gradients and moments), otherwise it falls back to
    ``torch.optim.AdamW`` with one parameter group per configuration.
    Call :meth:`set_grads` with gradients of the same layout before :meth:`step`.
    """

    def __init__(
        self,
        params: dict[str, Tensor] | Tensor,
        lr: Tensor | list[float],
        weight_decay: float | list[float] = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        fused: bool | None = None,
    ):
        self.stacked = [params] if isinstance(params, Tensor) else list(params.values())
        K = self.stacked[0].shape[0]
        lrs = [float(x) for x in (lr.tolist() if isinstance(lr, Tensor) else lr)]
        wds = (
            [float(weight_decay)] * K
            if isinstance(weight_decay, (int, float))
            else [float(w) for w in weight_decay]
        )
        if len(lrs) != K or len(wds) != K:
            raise ValueError(f"need {K} learning rates and weight decays, got {len(lrs)} and {len(wds)}")
        self.K, self.lrs, self.wds, self.betas, self.eps = K, lrs, wds, betas, eps
        # leaf views sharing storage with the stacked tensors
        self.views = [[p.detach()[k] for p in self.stacked] for k in range(K)]
        dev = self.stacked[0].device
        kernel = getattr(torch, "_fused_adamw_", None)
        ok_dtype = all(
            p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16) for p in self.stacked
        )
        self.fused = (fused is not False) and kernel is not None and ok_dtype and dev.type in ("cpu", "cuda")
        self.optimizer = None
        self._grads: list[Tensor] | None = None
        self._clip: tuple | None = None
        if self.fused:
            self.exp_avg = [torch.zeros_like(p) for p in self.stacked]
            self.exp_avg_sq = [torch.zeros_like(p) for p in self.stacked]
            self.state_step = torch.zeros((), dtype=torch.float32, device=dev)
            self._m = [[m[k] for m in self.exp_avg] for k in range(K)]
            self._v = [[v[k] for v in self.exp_avg_sq] for k in range(K)]
            self._steps = [self.state_step] * len(self.stacked)  # read-only in the kernel: one shared counter
            self._g: list[list[Tensor]] | None = None
        else:
            groups = [{"params": self.views[k], "lr": lrs[k], "weight_decay": wds[k]} for k in range(K)]
            self.optimizer = torch.optim.AdamW(groups, betas=betas, eps=eps)

    def take_rows(self, rows: list[int], params: Tensor) -> BatchedAdamW:
        """An optimizer for the configurations ``rows`` only, over ``params`` (their weights, a new
        (len(rows), P) buffer), carrying over their learning rates, weight decays, moments and step
        count: the rows then update exactly as they would have in the larger stack."""
        if not isinstance(params, Tensor) or len(self.stacked) != 1:
            raise ValueError("take_rows needs the optimizer of a flat (K, P) buffer")
        new = BatchedAdamW(
            params,
            [self.lrs[k] for k in rows],
            [self.wds[k] for k in rows],
            self.betas,
            self.eps,
            fused=self.fused,
        )
        if new.fused:
            idx = torch.as_tensor(rows, device=params.device)
            new.exp_avg[0].copy_(self.exp_avg[0][idx])
            new.exp_avg_sq[0].copy_(self.exp_avg_sq[0][idx])
            new.state_step.copy_(self.state_step)
        else:
            for j, k in enumerate(rows):
                old = self.optimizer.state.get(self.views[k][0])
                if old:
                    new.optimizer.state[new.views[j][0]] = {n: v.clone() for n, v in old.items()}
        return new

    @property
    def param_groups(self) -> list[dict]:
        if self.optimizer is not None:
            return self.optimizer.param_groups
        return [{"lr": lr, "weight_decay": wd} for lr, wd in zip(self.lrs, self.wds, strict=True)]

    def set_lr(self, lrs: list[float]) -> None:
        self.lrs = [float(x) for x in lrs]
        if self.optimizer is not None:
            for g, lr in zip(self.optimizer.param_groups, self.lrs, strict=True):
                g["lr"] = lr

    def set_grads(self, grads: list[Tensor] | Tensor) -> None:
        """Gradients in the layout of ``params`` (a (K, P) tensor, or a list in the dict's order).
        Views are kept: gradients written in place into the same tensors need no second call."""
        grads = [grads] if isinstance(grads, Tensor) else list(grads)
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]  # the kernel wants dense rows
        self._grads = grads
        self._g = [[g[k] for g in grads] for k in range(self.K)]
        for k in range(self.K):
            for view, g in zip(self.views[k], self._g[k], strict=True):
                view.grad = g

    def step(self, clip_grad_norm: float = 0.0) -> None:
        """One AdamW update; ``clip_grad_norm`` > 0 first scales each configuration's gradients to
        at most that norm (``clip_grad_norm_`` per configuration; in the fused kernel itself)."""
        if self._grads is None:
            raise RuntimeError("BatchedAdamW.step() before set_grads()")
        if self.optimizer is not None:
            if clip_grad_norm > 0:
                clip_grad_norms_(self._grads, clip_grad_norm)
            self.optimizer.step()
            return
        self.state_step += 1
        b1, b2 = self.betas
        scale = None
        if clip_grad_norm > 0:  # the kernel divides the gradients by grad_scale = 1 / clip coefficient
            if self._clip is None or self._clip[0] != clip_grad_norm:  # (norm + 1e-6) / c as one addcmul
                dev = self.state_step.device
                self._clip = (
                    clip_grad_norm,
                    torch.tensor(1e-6 / clip_grad_norm, device=dev),
                    torch.tensor(1.0 / clip_grad_norm, device=dev),
                )
            scale = torch.addcmul(self._clip[1], _stacked_norms(self._grads), self._clip[2]).clamp_(min=1.0)
        for k in range(self.K):
            torch._fused_adamw_(
                self.views[k],
                self._g[k],
                self._m[k],
                self._v[k],
                [],
                self._steps,
                lr=self.lrs[k],
                beta1=b1,
                beta2=b2,
                weight_decay=self.wds[k],
                eps=self.eps,
                amsgrad=False,
                maximize=False,
                grad_scale=None if scale is None else scale[k],
            )


def _stacked_norms(grads: list[Tensor]) -> Tensor:
    """(K,) L2 norms of each configuration's gradients (row k of every (K, ...) tensor)."""
    if len(grads) == 1:
        return torch.linalg.vector_norm(grads[0].reshape(grads[0].shape[0], -1), dim=1)
    per = torch.stack([torch.linalg.vector_norm(g.detach().reshape(g.shape[0], -1), dim=1) for g in grads])
    return torch.linalg.vector_norm(per, dim=0)


def clip_grad_norms_(grads: list[Tensor] | Tensor, max_norm: float) -> Tensor:
    """Per-configuration ``clip_grad_norm_`` on stacked gradients (K, ...); returns the norms (K,)."""
    grads = [grads] if isinstance(grads, Tensor) else list(grads)
    norms = _stacked_norms(grads)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms
