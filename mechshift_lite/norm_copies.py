"""LayerNorm / RMSNorm of *identical copies* of one tensor, with one gradient per copy.

Attribution gives every attention head its own q, k and v copy of the residual stream
(``[B, P, 3, H, D]``, an expanded view of ``[B, P, D]``), so that the gradient reaching each copy
can be read separately. Normalising 3H copies the plain way repeats the same statistics 3H times
and dominated the cost of EAP-IG. This function computes the statistics once and still returns
a separate gradient for every copy. The instrumented pass (:mod:`mechshift_lite.hooked`) calls it,
through :meth:`mechshift_lite.model.Norm.of_copies`, on the copies no hook replaced; the tests
check it against normalising materialised copies.
"""

from __future__ import annotations

import torch
from torch import Tensor


class CopiesNorm(torch.autograd.Function):
    """``norm(x)`` for an expanded ``x [..., D]``: statistics once, gradients per copy.

    ``b is None`` selects RMSNorm, else LayerNorm; statistics in (at least) float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None, eps: float) -> Tensor:
        base = x
        for i, (st, n) in enumerate(zip(x.stride()[:-1], x.shape[:-1])):
            if st == 0 and n > 1:
                base = base.narrow(i, 0, 1)                      # one copy of each repeated dimension
        dtype = torch.promote_types(x.dtype, torch.float32)
        x32 = base.to(dtype)
        centred = x32 if b is None else x32 - x32.mean(-1, keepdim=True)
        inv = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
        xhat = centred * inv
        out = xhat * w.to(dtype) if b is None else xhat * w.to(dtype) + b.to(dtype)
        ctx.save_for_backward(xhat, inv, w)
        ctx.rms = b is None
        return out.to(x.dtype).expand(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        xhat, inv, w = ctx.saved_tensors                          # [..., 1.., D], [..., 1.., 1]
        D = grad.shape[-1]
        n = xhat.numel() // D
        g = grad.to(xhat.dtype)
        xh = xhat.reshape(n, 1, D)
        # per copy: d norm(x)/dx^T g = inv * (w*g - mean(w*g) - xhat * mean(w*g*xhat)) (LayerNorm)
        gw = (g * w.to(xhat.dtype)).reshape(n, -1, D).mul_(inv.reshape(n, 1, 1))   # [n, copies, D]
        proj = torch.bmm(gw, xh.transpose(1, 2)).div_(D)          # [n, copies, 1]
        if not ctx.rms:
            gw.sub_(gw.mean(-1, keepdim=True))
        dx = gw.addcmul_(xh, proj, value=-1)
        dims = tuple(range(grad.dim() - 1))
        grad_w = (g * xhat).sum(dims).to(w.dtype) if ctx.needs_input_grad[1] else None
        grad_b = g.sum(dims).to(w.dtype) if not ctx.rms and ctx.needs_input_grad[2] else None
        return dx.reshape(grad.shape).to(grad.dtype), grad_w, grad_b, None
