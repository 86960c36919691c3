"""The RS-IMLE optimiser: AdamW as the official code (betas 0.9/0.9, weight decay 0.01) or Adam as the paper
(App. F: beta1 0.5, beta2 0.999). Adam's weight_decay is L2 added to the gradient; AdamW's is decoupled."""

import torch

OPTIMIZERS = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW}

def build_optimizer(cfg, params):
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f'optimizer must be one of {sorted(OPTIMIZERS)}, got {cfg.optimizer!r}')
    return OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
