"""Kernel Inception Distance (Binkowski et al. 2018), with stylegan2-ada's kid50k_full protocol.

The unbiased MMD^2 estimate with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
`num_subsets` random subsets of m = min(N_real, N_fake, max_subset_size) rows of each set (100 and 1000 in
kid50k_full). The subsets are drawn from a seeded generator, so the value is reproducible. The kernels are computed
in float64 on `device` (upstream uses float32 on the CPU).
"""

import numpy as np
import torch

def kernel_inception_distance(real, fake, num_subsets=100, max_subset_size=1000, seed=0, device='cpu'):
    real, fake = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x)) for x in (real, fake))
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f'KID needs features [N, D] and [M, D], got {list(real.shape)} and {list(fake.shape)}')
    d = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 real and 2 fake samples, got {len(real)} and {len(fake)}')
    real, fake = real.to(device, torch.float64), fake.to(device, torch.float64)
    kernel = lambda a, b: (a @ b.T / d + 1) ** 3
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[torch.from_numpy(rng.choice(len(fake), m, replace=False)).to(device)]
        y = real[torch.from_numpy(rng.choice(len(real), m, replace=False)).to(device)]
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        total += (within - 2 * kxy.mean()).item()
    return float(total / num_subsets)
