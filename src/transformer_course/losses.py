"""Chapter 7: the language-model loss, cross-entropy computed from the logits.

The model's last layer gives unnormalised scores (logits) ``z``; the loss of a target
``y`` is ``-log softmax(z)[y] = logsumexp(z) - z[y]``. Computing ``log(sum(exp(z)))``
directly overflows for logits of a few hundred and underflows for very negative ones;
subtracting the row's maximum first (``m + log(sum(exp(z - m)))``) gives the same value
and never does, since the largest term becomes ``exp(0) = 1``.
"""

from __future__ import annotations

from torch import Tensor


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of ``targets`` under the distributions ``softmax(logits)``.

    Args:
        logits: ``(..., V)`` unnormalised scores, floating point.
        targets: ``(...)`` integer class ids in ``0..V-1``, the shape of ``logits``
            without its last dimension; a position whose target equals
            ``ignore_index`` (padding, or a prompt the loss should not learn) adds
            nothing to the loss and does not count in the mean.
        ignore_index: the target id that masks a position out.

    Returns:
        A scalar in the dtype of ``logits``: the mean over the kept positions (NaN when
        none is kept, as ``torch.nn.functional.cross_entropy`` gives).
    """
    ### BEGIN SOLUTION
    logits = logits.reshape(-1, logits.size(-1))
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    logits, targets = logits[keep], targets[keep]
    # log-sum-exp with the row's maximum taken out: no exp() overflows or underflows to 0
    top = logits.max(dim=-1, keepdim=True).values
    log_norm = top.squeeze(-1) + (logits - top).exp().sum(dim=-1).log()
    picked = logits.gather(-1, targets[:, None]).squeeze(-1)
    return (log_norm - picked).mean()
    ### END SOLUTION
