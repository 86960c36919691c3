"""The EMA of G: its decay per step, and a warning when a run is too short for it.

With decay beta and no ramp-up, after T steps G_ema still holds beta^T of its random initial weights; the
averaging horizon is 1/(1 - beta) steps. The official few-shot beta 0.9999 (horizon 10k steps) leaves 88% of
the initialisation in a 1,250-step run."""

STALE_LIMIT = 0.05          # warn when more than this share of G_ema is still the initial weights at the end

def ema_beta(cfg, step):
    """beta_t = min(ema, (1 + t) / (10 + t)) with ema_rampup (ours, for short runs), else ema."""
    return min(cfg.ema, (1 + step) / (10 + step)) if cfg.ema_rampup else cfg.ema

def initial_share(cfg, total_steps):
    """The share of G_ema's initial weights left after total_steps updates."""
    if not cfg.ema_rampup:
        return cfg.ema ** total_steps
    share = 1.0
    for t in range(total_steps):            # with ramp-up the early betas are small; the product is exact
        share *= ema_beta(cfg, t)
        if share < 1e-12:
            break
    return share

def ema_warning(cfg, total_steps):
    """A one-line warning, or None, when G_ema would end mostly at its random start."""
    share = initial_share(cfg, total_steps)
    if share <= STALE_LIMIT:
        return None
    horizon = 1 / (1 - cfg.ema) if cfg.ema < 1 else float('inf')
    return (f'warning: EMA {cfg.ema} averages over ~{horizon:,.0f} steps but the run is {total_steps:,} steps: '
            f'G_ema (used for grids and metrics) would still be {share:.0%} its random initial weights. '
            f'Use --ema-rampup, a smaller --ema, or a longer --kimg.')
