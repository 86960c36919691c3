"""Mode counting, the classic Stacked-MNIST numbers: modes covered and KL(generated mode histogram || uniform)."""

import numpy as np
import torch

def mode_stats(mode_labels, num_modes=1000):
    """{'modes': distinct modes seen at least once, 'kl': KL(p || uniform) in nats} for integer labels in 0..num_modes-1.

    p is the histogram of the labels; KL(p || U) = sum_i p_i log(p_i * num_modes), with 0 log 0 = 0. It is 0 for a
    perfectly balanced histogram and log(num_modes) (6.91 for 1000) when every sample falls in one mode.
    """
    labels = np.asarray(mode_labels.cpu() if isinstance(mode_labels, torch.Tensor) else mode_labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f'mode_labels must be a non-empty 1-D array, got shape {list(labels.shape)}')
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'mode_labels must be integers, got dtype {labels.dtype}')
    if labels.min() < 0 or labels.max() >= num_modes:
        raise ValueError(f'mode_labels must lie in 0..{num_modes - 1}, got {labels.min()}..{labels.max()}')
    p = np.bincount(labels, minlength=num_modes) / labels.size
    seen = p > 0
    kl = float(np.sum(p[seen] * np.log(p[seen] * num_modes)))
    return {'modes': int(seen.sum()), 'kl': max(kl, 0.0)}
