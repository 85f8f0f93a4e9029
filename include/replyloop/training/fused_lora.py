"""One autograd function per LoRA projection: base matmul and low-rank path, forward and backward.

peft's `lora.Linear.forward` runs `base(x) + lora_B(lora_A(dropout(x.to(fp32)))) * scaling` as about ten
separate ops (a cast of the input to fp32, dropout, two linears each casting its fp32 weight under autocast,
a scale, an add, a cast back), each an autograd node with its own backward: on SmolLM2 with all seven
projections adapted that is thousands of small ops per step, most of the step's time on a CPU.
`LoraLinearFn` computes the same thing as one autograd node (three matmuls forward, the last adding in
place into the base matmul's output; five backward), in the compute dtype (bf16 under autocast, else the input's dtype); the LoRA
weights stay fp32 parameters and get fp32 gradients.

`fuse_lora(model)` switches every plain peft LoRA linear of a model to it by replacing the module's
`forward` on the instance: parameters, names and `save_pretrained` stay peft's, so the adapter saved is a
normal peft adapter. A module in any state this function does not cover (adapters disabled or merged,
several active adapters, DoRA or another variant, a LoRA bias, `fan_in_fan_out`, extra call arguments) runs
peft's own forward. Tested against peft's forward and gradients (tests/training/test_fused_lora.py).
"""

from __future__ import annotations

import types

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class LoraLinearFn(torch.autograd.Function):
    """y = x W^T (+ bias) + scale * (dropout(x) A^T) B^T, all in `dtype`; A and B keep their own dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float, p: float, dtype):
        with torch.autocast(x.device.type, enabled=False):
            lead, n_in = x.shape[:-1], x.shape[-1]
            x2 = x.reshape(-1, n_in).to(dtype)
            w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
            noise = None
            xd = x2
            if p > 0:  # as torch's dropout: a Bernoulli(1 - p) mask scaled by 1 / (1 - p)
                noise = torch.empty_like(x2).bernoulli_(1 - p).div_(1 - p)
                xd = x2 * noise
            h = xd @ a.t()
            y = torch.addmm(bias.to(dtype), x2, w.t()) if bias is not None else x2 @ w.t()
            y.addmm_(h, b.t(), alpha=scale)
        ctx.save_for_backward(xd, noise, h, w, a, b)
        ctx.scale, ctx.lead, ctx.dtypes = scale, lead, (x.dtype, lora_a.dtype, lora_b.dtype)
        ctx.has_bias = bias is not None
        return y.view(*lead, -1)

    @staticmethod
    def backward(ctx, grad_y):
        xd, noise, h, w, a, b = ctx.saved_tensors
        x_dtype, a_dtype, b_dtype = ctx.dtypes
        with torch.autocast(grad_y.device.type, enabled=False):
            g = grad_y.reshape(-1, grad_y.shape[-1]).to(w.dtype)
            gh = (g @ b).mul_(ctx.scale)
            grad_x = grad_a = grad_b = None
            if ctx.needs_input_grad[0]:
                grad_x = g @ w
                if noise is None:
                    grad_x.addmm_(gh, a)
                else:
                    grad_x.addcmul_(gh @ a, noise)
                grad_x = grad_x.view(*ctx.lead, -1).to(x_dtype)
            if ctx.needs_input_grad[3]:
                grad_a = (gh.t() @ xd).to(a_dtype)
            if ctx.needs_input_grad[4]:
                grad_b = (g.t() @ h).mul_(ctx.scale).to(b_dtype)
        grad_bias = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, None, grad_bias, grad_a, grad_b, None, None, None


class LoraGroupFn(torch.autograd.Function):
    """Several LoRA projections of the same input (q/k/v, gate/up) as one: y = x W_cat^T + h B_diag^T with
    h = x A_cat^T, where W_cat stacks the frozen weights, A_cat the A matrices and B_diag holds each scaled B
    on its own diagonal block. Returns one output per projection. No dropout (see `_group_forward`)."""

    @staticmethod
    def forward(ctx, x, weight, splits: tuple, scales: tuple, dtype, *lora):
        k = len(splits)
        with torch.autocast(x.device.type, enabled=False):
            lead, n_in = x.shape[:-1], x.shape[-1]
            x2 = x.reshape(-1, n_in).to(dtype)
            w = weight.to(dtype)
            a = torch.cat(lora[:k]).to(dtype)
            b = torch.block_diag(*(bi * s for bi, s in zip(lora[k:], scales))).to(dtype)
            h = x2 @ a.t()
            y = (x2 @ w.t()).addmm_(h, b.t())
        ctx.save_for_backward(x2, h, w, a, b)
        ctx.meta = (lead, splits, scales, x.dtype, [t.dtype for t in lora], [t.shape[0] for t in lora[:k]])
        return tuple(part.view(*lead, -1) for part in y.split(splits, dim=1))

    @staticmethod
    def backward(ctx, *grads):
        x2, h, w, a, b = ctx.saved_tensors
        lead, splits, scales, x_dtype, lora_dtypes, ranks = ctx.meta
        k = len(splits)
        with torch.autocast(x2.device.type, enabled=False):
            g = torch.cat([gi.reshape(-1, n) for gi, n in zip(grads, splits)], dim=1).to(w.dtype)
            gh = g @ b
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = (g @ w).addmm_(gh, a).view(*lead, -1).to(x_dtype)
            grad_a = (gh.t() @ x2).split(ranks)
            g_parts, h_parts = g.split(splits, dim=1), h.split(ranks, dim=1)
            grad_b = [(gi.t() @ hi).mul_(s) for gi, hi, s in zip(g_parts, h_parts, scales)]
        grad_lora = [t.to(dt) for t, dt in zip([*grad_a, *grad_b], lora_dtypes)]
        return (grad_x, None, None, None, None, *grad_lora)


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name = _plain_adapter(self)
    if name is None or args or kwargs:
        return type(self).forward(self, x, *args, **kwargs)
    p = _dropout(self, name)
    group = getattr(self, "_replyloop_group", None)
    if group is not None and p == 0.0:
        out = group.output(self, x)
        if out is not None:
            return out
    base = self.base_layer
    return LoraLinearFn.apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                              float(self.scaling[name]), p, _compute_dtype(x))


def _dropout(layer, name: str) -> float:
    dropout = layer.lora_dropout[name]
    return float(dropout.p) if layer.training and isinstance(dropout, torch.nn.Dropout) else 0.0


class _Group:
    """Sibling projections a model calls one after the other on the same input tensor (Llama's q/k/v and
    gate/up). The first member called computes every member's output in one `LoraGroupFn`; the others are
    handed theirs when they are called with that same tensor object. Their frozen weights are made views of
    one stacked tensor (no copy kept). Anything else (another input, a member not plain LoRA) falls back to
    the single-projection path."""

    def __init__(self, members: list):
        self.members = members
        weights = [m.base_layer.weight for m in members]
        self.weight = torch.cat([w.detach() for w in weights])
        start = 0
        for m, w in zip(members, weights):
            m.base_layer.weight.data = self.weight[start : start + w.shape[0]]
            start += w.shape[0]
        self.splits = tuple(w.shape[0] for w in weights)
        self.pending: tuple | None = None  # (input tensor, {member: output})

    def output(self, member, x: torch.Tensor):
        if self.pending is not None and self.pending[0] is x and member in self.pending[1]:
            out = self.pending[1].pop(member)
            if not self.pending[1]:
                self.pending = None
            return out
        names = [_plain_adapter(m) for m in self.members]
        if None in names or any(m.base_layer.bias is not None for m in self.members):
            return None
        lora = [m.lora_A[n].weight for m, n in zip(self.members, names)]
        lora += [m.lora_B[n].weight for m, n in zip(self.members, names)]
        scales = tuple(float(m.scaling[n]) for m, n in zip(self.members, names))
        outs = LoraGroupFn.apply(x, self.weight, self.splits, scales, _compute_dtype(x), *lora)
        self.pending = (x, {m: o for m, o in zip(self.members, outs) if m is not member})
        return outs[self.members.index(member)]


def _plain_adapter(layer) -> str | None:
    """The one active vanilla LoRA adapter of `layer`, or None when peft's own forward must run."""
    if layer.disable_adapters or layer.merged or getattr(layer, "fan_in_fan_out", False):
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if name in getattr(layer, "lora_variant", {}) or layer.use_dora.get(name, False):
        return None
    if layer.lora_B[name].bias is not None or not isinstance(layer.base_layer, torch.nn.Linear):
        return None
    return name


GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # siblings fed the same input


def fuse_lora(model, *, groups: bool = True) -> int:
    """Route every peft LoRA `Linear` of `model` through `LoraLinearFn`, and the adapted siblings of each
    `GROUPS` entry through one `LoraGroupFn` (unless `groups` is False); returns how many were switched."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    switched = 0
    for parent in model.modules():
        children = dict(parent.named_children())
        for child in children.values():
            if type(child) is LoraLinear:
                child.forward = types.MethodType(_fused_forward, child)
                switched += 1
        for names in GROUPS if groups else ():
            members = [children[n] for n in names if type(children.get(n)) is LoraLinear]
            if len(members) > 1 and len({m.base_layer.weight.dtype for m in members}) == 1:
                group = _Group(members)
                for m in members:
                    m._replyloop_group = group
    return switched
