"""What an autograd graph keeps alive: the saved tensors of a forward pass, counted and sized."""

import torch

def saved_tensors(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) and return (output, count, bytes) of the tensors autograd saved for backward.

    Bytes count each saved tensor's own elements; parameters saved by reference are counted too, equally
    for every H, so ratios between configurations are what to compare.
    """
    stats = {'count': 0, 'bytes': 0}

    def pack(t):
        stats['count'] += 1
        stats['bytes'] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args, **kwargs)
    return out, stats['count'], stats['bytes']
