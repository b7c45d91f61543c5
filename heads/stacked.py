"""K fusion heads of one architecture run at once with stacked weights and batched matmuls.

:class:`StackedHeads` holds the parameters of K :class:`heads.model.FusionHead` modules in one
flat (K, P) buffer (each named parameter is a (K, ...) view of it, the layout of
``torch.func.stack_module_state``) and evaluates all of them in one pass (``torch.baddbmm``).
Training uses :meth:`StackedHeads.fast_loss_and_grads`: forward, the loss in the fused form of
:mod:`heads.losses` (per-item targets prepared once per block of steps by
:func:`heads.losses.loss_targets`, the prior once by :meth:`StackedHeads.prior_inputs`, since at
small head sizes a step's cost is mostly the number of tensor operations) and a hand-written
backward pass (checked against autograd of :func:`heads.losses.mixed_loss` in the tests) that
writes every gradient straight into one flat (K, P) gradient buffer, so clipping is one norm and
the AdamW update one fused call per configuration (the clipping inside it). Dropout masks are drawn
per configuration from its own generator (:meth:`StackedHeads.dropout_masks_from`), so a
configuration trains alike alone or stacked.

The optimizer of the flat buffer (one AdamW per configuration, with per-configuration gradient
clipping) is :class:`heads.batched_adamw.BatchedAdamW`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
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


def _views(flat: Tensor, shapes: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    out, off = {}, 0
    K = flat.shape[0]
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        out[name] = flat[:, off : off + n].view(K, *shape)
        off += n
    return out


class StackedHeads:
    """K FusionHeads with identical architecture as one flat (K, P) parameter buffer."""

    def __init__(self, template: FusionHead, flat: Tensor, shapes: dict[str, tuple[int, ...]]):
        self.template = copy.deepcopy(template).cpu()
        self.shapes = dict(shapes)
        self.flat = flat
        self.params = _views(flat, self.shapes)
        self.layers = _layers(template)
        self.K = flat.shape[0]
        self.dropout = template.dropout
        self._plan: tuple | None = None
        names = list(self.shapes)
        # a learned missing embedding directly after the prior embedding in the flat buffer
        # (FusionHead's parameter order) lets the step use both as one (C + 1)-row table
        self._missing_row = (
            "missing_embedding" in self.shapes
            and names.index("missing_embedding") == names.index("prior_embedding") + 1
        )
        if (
            "missing_embedding" in self.shapes and not self._missing_row
        ):  # pragma: no cover - FusionHead's order
            raise ValueError("StackedHeads needs missing_embedding right after prior_embedding")

    @classmethod
    def from_heads(cls, heads: list[FusionHead], device: str | torch.device = "cpu") -> StackedHeads:
        if not heads:
            raise ValueError("StackedHeads needs at least one head")
        cfg = heads[0].config()
        for h in heads[1:]:
            if h.config() != cfg:
                raise ValueError(f"heads differ in architecture: {h.config()} vs {cfg}")
        stacked, _ = torch.func.stack_module_state(heads)
        shapes = {k: tuple(v.shape[1:]) for k, v in stacked.items()}
        flat = (
            torch.cat([v.detach().reshape(len(heads), -1) for v in stacked.values()], dim=1)
            .to(device)
            .contiguous()
        )
        return cls(heads[0], flat, shapes)

    # ------------------------------------------------------------------ views and export
    @property
    def dropout_width(self) -> int:
        """Uniform random numbers one item needs per forward pass in training mode."""
        return sum(layer.width for layer in self.layers if layer.kind == "dropout")

    def n_parameters_per_head(self) -> int:
        return int(self.flat.shape[1])

    def grad_buffer(self) -> tuple[Tensor, dict[str, Tensor]]:
        """A zeroed (K, P) gradient buffer and its per-parameter views."""
        g = torch.zeros_like(self.flat)
        return g, _views(g, self.shapes)

    def state_dict(self, k: int) -> dict[str, Tensor]:
        """State dict of head ``k`` (detached CPU copies), loadable into a FusionHead."""
        return {name: v[k].detach().cpu().clone() for name, v in self.params.items()}

    def head(self, k: int) -> FusionHead:
        head = copy.deepcopy(self.template)
        head.load_state_dict(self.state_dict(k))
        return head.eval()

    def snapshot(self) -> Tensor:
        return self.flat.detach().clone()

    def state_dict_from(self, flat_row: Tensor) -> dict[str, Tensor]:
        """State dict of one row of a (K, P)-shaped buffer (e.g. a snapshot)."""
        views = _views(flat_row.detach().reshape(1, -1).cpu(), self.shapes)
        return {k: v[0].clone() for k, v in views.items()}

    # ------------------------------------------------------------------ forward
    def _masked_prior(self, prior: Tensor, missing: Tensor | None) -> Tensor:
        q = prior.to(self.flat.dtype)
        if missing is not None:
            q = q.masked_fill(missing.unsqueeze(-1), 0.0)
        return q

    def prior_representation(
        self, prior: Tensor, missing: Tensor | None, params: dict[str, Tensor] | None = None
    ) -> Tensor:
        P = params or self.params
        E = P["prior_embedding"]  # (K, C, P)
        q = self._masked_prior(prior, missing)
        m = torch.einsum("bc,kcp->kbp", q, E) if q.dim() == 2 else torch.bmm(q, E)
        if "missing_embedding" in P and missing is not None:
            v = P["missing_embedding"].unsqueeze(1)  # (K, 1, P)
            miss = missing.unsqueeze(-1)
            if miss.dim() == 2:
                miss = miss.unsqueeze(0)
            m = torch.where(miss, v, m)
        return m

    def _input(self, h, prior, missing, params=None) -> Tensor:
        t = self.template
        parts = []
        if t.uses_h:
            if h is None:
                raise ValueError("h is required")
            parts.append(h if h.dim() == 3 else h.unsqueeze(0).expand(self.K, -1, -1))
        if t.uses_prior:
            if prior is None:
                raise ValueError(f"head preset {t.preset!r} fuses an LLM prior: pass prior")
            parts.append(self.prior_representation(prior, missing, params))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def dropout_masks(self, uniforms: Tensor) -> Tensor:
        """Scaled keep-masks (K, B, W) from uniforms: 1/(1−p) where u ≥ p, else 0."""
        p = self.dropout
        return (uniforms >= p).to(self.flat.dtype).mul_(1.0 / (1.0 - p))

    def dropout_masks_from(self, generators: list, n: int) -> Tensor:
        """Scaled keep-masks (K, n, dropout_width) for n items, row k drawn from ``generators[k]``.

        A numpy ``Generator`` (the trainer's choice on a CPU, see :func:`mask_generator`) supplies
        64-bit words, each giving four 16-bit uniforms: a quarter of the draws of one float per
        element, from a bit generator (SFC64) 2.5x faster than torch's CPU Mersenne twister; an
        element is kept with probability 1 − t/65536, t = round(p·65536). A ``torch.Generator``
        (the trainer's choice on a GPU, where drawing is cheap) gives float uniforms kept where
        u ≥ p. Kept elements are scaled by the inverse of the keep probability.
        """
        W = self.dropout_width
        p = float(self.dropout)
        if not 0 <= p < 1:
            raise ValueError(f"dropout {p} is not in [0, 1)")
        dev = self.flat.device
        out = torch.empty(len(generators), n, W, dtype=self.flat.dtype, device=dev)
        t = round(p * 65536)
        t16 = t - 32768  # keep where a signed 16-bit uniform is >= t16 (probability 1 − t/65536)
        for k, g in enumerate(generators):
            row = out[k].view(-1)
            if not isinstance(g, np.random.Generator):
                torch.rand(n * W, generator=g, device=dev, out=row)
                row.copy_(row >= p).mul_(1.0 / (1.0 - p))
            elif t == 0:
                row.fill_(1.0)
            else:
                words = torch.from_numpy(g.bit_generator.random_raw(-(-n * W // 4)).view(np.int64))
                u = words.view(torch.int16)[: n * W].to(dev)  # uniform over all 16-bit patterns
                # clamp to {t16 − 1, t16}, shift to {0, 1}: integer ops, far cheaper than bool masks on a CPU
                row.copy_(u.clamp(min=t16 - 1, max=t16).sub_(t16 - 1)).mul_(65536.0 / (65536 - t))
        return out

    def forward(
        self,
        h: Tensor | None,
        prior: Tensor | None = None,
        missing: Tensor | None = None,
        uniforms: Tensor | None = None,
        params: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Logits (K, B, C).

        ``h``, ``prior``, ``missing`` are (K, B, ·) (one batch per configuration) or (B, ·)
        (the same items for every configuration). ``uniforms`` (K, B, dropout_width) in [0, 1)
        turns dropout on (an element is kept where its uniform ≥ p); None = evaluation mode.
        ``params`` (default: the stacked weights) lets autograd run through other tensors.
        """
        P = params or self.params
        z = self._input(h, prior, missing, P)
        masks = self.dropout_masks(uniforms) if uniforms is not None and self.dropout > 0 else None
        offset = 0
        for layer in self.layers:
            if layer.kind == "dropout":
                if masks is not None:
                    z = z * masks[..., offset : offset + layer.width]
                offset += layer.width
            elif layer.kind == "linear":
                W, b = P[layer.name + ".weight"], P[layer.name + ".bias"]
                z = batched_linear(z if z.dim() == 3 else z.unsqueeze(0).expand(self.K, -1, -1), W, b)
            else:
                z = F.gelu(z)
        return z

    __call__ = forward

    # ------------------------------------------------------------------ training step
    def prior_inputs(self, prior: Tensor, missing: Tensor | None) -> Tensor:
        """The prior as the training step consumes it: rows of missing priors zeroed and, for a
        learned missing embedding, one more column holding the missing flag, so that
        ``prior_inputs @ prior_table`` is the prior representation in a single matmul."""
        q = self._masked_prior(prior, missing)
        if self._missing_row:
            flag = (
                missing
                if missing is not None
                else torch.zeros(q.shape[:-1], dtype=torch.bool, device=q.device)
            )
            q = torch.cat([q, flag.unsqueeze(-1).to(q.dtype)], dim=-1)
        return q

    def prior_table(self, params: dict[str, Tensor]) -> Tensor:
        """(K, C [+ 1], P) view of the prior embedding followed by the missing embedding (adjacent
        in the flat buffer), in ``params`` (the weights) or a gradient buffer's views."""
        E = params["prior_embedding"]
        if not self._missing_row:
            return E
        K, C, D = E.shape
        return E.as_strided((K, C + 1, D), (E.stride(0), D, 1))

    def _step_plan(self, grads: dict[str, Tensor]) -> tuple[list[tuple], Tensor | None, Tensor | None]:
        """The layers with their weight, bias and gradient views bound once per gradient buffer
        (a step then does no name lookups or view building: at the demo's head size Python
        overhead is a large part of a step)."""
        if self._plan is not None and self._plan[0] is grads:
            return self._plan[1]
        P, t = self.params, self.template
        h_width = t.in_dim if t.uses_h else 0
        ops: list[tuple] = []
        offset, first = 0, True
        for layer in self.layers:
            if layer.kind == "dropout":
                # the first layer's input gradient is needed only for its prior part
                back = (
                    slice(offset + h_width, offset + layer.width)
                    if first
                    else slice(offset, offset + layer.width)
                )
                ops.append(("dropout", slice(offset, offset + layer.width), back))
                offset += layer.width
            elif layer.kind == "linear":
                W, b = P[layer.name + ".weight"], P[layer.name + ".bias"]
                W_back = (W[..., h_width:] if t.uses_prior else None) if first else W
                ops.append(
                    (
                        "linear",
                        b.unsqueeze(1),
                        W.transpose(1, 2),
                        W_back,
                        grads[layer.name + ".weight"],
                        grads[layer.name + ".bias"],
                    )
                )
                first = False
            else:
                ops.append(("gelu",))
        table = self.prior_table(P) if t.uses_prior else None
        gtable = self.prior_table(grads) if t.uses_prior else None
        plan = (ops, table, gtable)
        self._plan = (grads, plan)
        return plan

    def fast_loss_and_grads(
        self,
        h: Tensor | None,
        qx: Tensor | None,
        masks: Tensor | None,
        T: Tensor,
        s: Tensor,
        grads: dict[str, Tensor],
    ) -> Tensor:
        """Per-configuration losses (K,) −Σ_i Σ_c T_ic log p_ic (the fused form of the reference loss),
        with every gradient written into ``grads`` (views of a (K, P) buffer, see :meth:`grad_buffer`).

        Inputs are (K, B, ·) batches: ``h`` the features, ``qx`` the prior from :meth:`prior_inputs`,
        ``masks`` (K, B, dropout_width) scaled keep-masks (:meth:`dropout_masks`) or None, and the
        loss targets ``T``, ``s`` from :func:`heads.losses.loss_targets` (they do not depend on the
        weights, so the trainer prepares them once per block of steps)."""
        ops, table, gtable = self._step_plan(grads)
        if table is None:
            z = h
        else:
            m = torch.bmm(qx, table)
            z = torch.cat((h, m), dim=-1) if h is not None and self.template.uses_h else m
        saved: list = []
        for op in ops:
            kind = op[0]
            if kind == "linear":
                saved.append(z)
                z = torch.baddbmm(op[1], z, op[2])
            elif kind == "dropout":
                if masks is not None:
                    mk = masks[..., op[1]]
                    z = z * mk
                    saved.append(mk)
                else:
                    saved.append(None)
            else:
                saved.append(z)
                z = F.gelu(z)
        # loss = −Σ_ic T_ic log p_ic, so d/dlogits = p_i s_i − T_i with s_i = Σ_c T_ic
        logp = torch.log_softmax(z, dim=-1)
        loss = (T * logp).sum((1, 2)).neg_()
        dz = logp.exp_().mul_(s.unsqueeze(-1)).sub_(T)
        for op, x in zip(reversed(ops), reversed(saved), strict=True):
            kind = op[0]
            if kind == "linear":
                torch.bmm(dz.transpose(1, 2), x, out=op[4])
                torch.sum(dz, 1, out=op[5])
                if op[3] is None:  # first layer of a head without a prior: no input gradient needed
                    return loss
                dz = torch.bmm(dz, op[3])
            elif kind == "dropout":
                if x is not None:
                    dz = dz * (x if op[2].start == op[1].start else masks[..., op[2]])
            else:
                dz = torch.ops.aten.gelu_backward(dz, x)
        torch.bmm(qx.transpose(1, 2), dz, out=gtable)
        return loss


def mask_generator(seed: int) -> np.random.Generator:
    """The dropout-mask generator of a configuration on a CPU (SFC64, its own stream of ``seed``;
    on a GPU the trainer draws masks with the configuration's ``torch.Generator`` instead)."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([int(seed) & (2**64 - 1), 0x6D61736B])))
