"""Every setting of the RS-IMLE trainer in one object, with the official few-shot defaults and their source.

FEWSHOT is the official configuration: SerChirag/rs-imle (ECCV 2024), hps.py's 'fewshot' set on top of the
argument defaults in hps.py, with the RS-IMLE switches of the paper's few-shot runs (use_rsimle, eps 0.12,
force_factor 20, imle_force_resample 30; see ../shared/NOTES.md). DEFAULT_RUN is the embedded CPU run
(Stacked Digits, no --data); each of its departures from FEWSHOT is listed in DEFAULT_RUN_REASONS.
The paper's setups are presets (rtm_plugin/imle/presets/*.yaml); fewshot-official.yaml states FEWSHOT value by
value with its sources (tests/test_imle_presets.py keeps the two equal).
"""

from dataclasses import asdict, dataclass, fields, replace

@dataclass(frozen=True)
class IMLEConfig:
    # Generator.
    map: str = 'rtm'                # 'rtm' | 'mlp' (the official mapping is the 8-layer MLP)
    rtm_h: int = 8                  # RTM outer steps; the paper's few-shot RS-IMLE setting is (8, 2)
    rtm_l: int = 2
    rtm_tokens: int = 4
    rtm_dim: int = 256              # token width; tokens * rtm_dim = z_dim (1024) by default
    rtm_block: str = 'mlp'
    mlp_layers: int = 8
    z_dim: int = 1024
    w_dim: int = 1024
    decoder: str = 'fewshot'        # 'fewshot' | 'convnext' | 'stylegan2'
    dec_blocks: str = None          # block string; None = fewshot: the official 256-px string cut at `resolution`,
                                    # convnext: App. C's layout for 32 or 256 px
    width: int = 384
    bottleneck: float = 0.25
    resolution: int = 256
    noise: bool = False             # spatial noise injection at <= 256 px (App. C); the official code has none
    # Optimisation.
    optimizer: str = 'adamw'        # 'adamw' (official) | 'adam' (the paper, App. F)
    lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.9
    weight_decay: float = 0.01
    batch: int = 4
    ema: float = 0.9999
    ema_rampup: bool = False        # ours: beta_t = min(ema, (1 + t) / (10 + t)), for short runs
    warmup_iters: int = 10
    lr_decay_epochs: int = 4000     # StepLR step_size; the official code steps it once per epoch after warm-up
    lr_decay_gamma: float = 0.25
    shuffle: bool = False           # the official DataLoader does not shuffle
    # RS-IMLE.
    force_factor: float = 20.0
    pool_multiple: int = 1024       # pool = ceil(force_factor * N / 1024) * 1024
    force_resample: int = 30        # re-match everything with a fresh pool every 30 epochs
    proj_dim: int = 800
    eps: float = 0.12
    perturb: float = 0.001
    lpips_coef: float = 1.0
    l2_coef: float = 0.1
    knn_backend: str = 'torch'      # 'torch' (chunked GEMM) | 'faiss'
    knn_max_elements: int = 1 << 24 # distance-matrix chunk: N x chunk <= this many floats
    # Run.
    kimg: float = 1000.0
    seed: int = 0

OFFICIAL_SOURCES = {
    'map': ('mlp', 'models.py Decoder: MappingNetowrk(code_dim=latent_dim, n_mlp=n_mpl)'),
    'mlp_layers': (8, 'hps.py --n_mpl 8'),
    'z_dim': (1024, 'hps.py --latent_dim 1024'),
    'w_dim': (1024, 'mapping_network.py: EqualLinear(code_dim, code_dim), w = z size'),
    'dec_blocks': (None, "hps.py fewshot.dec_blocks '1x4,4m1,4x4,8m4,8x4,16m8,16x3,32m16,...,256m128'"),
    'width': (384, "hps.py fewshot.width"),
    'bottleneck': (0.25, 'hps.py --bottleneck_multiple 0.25'),
    'resolution': (256, "hps.py --image_size 256, fewshot.dec_blocks ends at 256"),
    'noise': (False, 'mapping_network.py NoiseInjection.forward returns its input unchanged (no noise)'),
    'optimizer': ('adamw', 'helpers/train_helpers.py load_opt: AdamW(weight_decay=wd, lr, betas)'),
    'lr': (2e-4, 'hps.py fewshot.lr'),
    'beta1': (0.9, 'hps.py --adam_beta1'),
    'beta2': (0.9, 'hps.py --adam_beta2'),
    'weight_decay': (0.01, 'hps.py fewshot.wd'),
    'batch': (4, 'hps.py fewshot.n_batch'),
    'ema': (0.9999, 'hps.py fewshot.ema_rate'),
    'warmup_iters': (10, 'hps.py fewshot.warmup_iters'),
    'lr_decay_epochs': (4000, 'hps.py --lr_decay_iters; train_helpers.load_opt StepLR, stepped per epoch'),
    'lr_decay_gamma': (0.25, 'hps.py --lr_decay_rate'),
    'shuffle': (False, 'train.py: DataLoader(..., shuffle=False)'),
    'force_factor': (20, 'RS-IMLE few-shot runs (NOTES); sampler.py pool = ceil(factor*N/1024)*1024'),
    'pool_multiple': (1024, 'hps.py --imle_db_size 1024'),
    'force_resample': (30, 'hps.py --imle_force_resample 30'),
    'proj_dim': (800, "hps.py --proj_dim 800, --search_type 'l2'"),
    'eps': (0.12, 'RS-IMLE few-shot runs (NOTES), sampler.py eps_radius'),
    'perturb': (0.001, 'hps.py --imle_perturb_coef'),
    'lpips_coef': (1.0, 'hps.py --lpips_coef'),
    'l2_coef': (0.1, 'hps.py --l2_coef'),
}

FEWSHOT = IMLEConfig()

DEFAULT_RUN_REASONS = {
    'resolution': (16, 'Stacked Digits are 8x8 digits; 16 px keeps every stroke and the run on CPU'),
    'z_dim': (128, 'CPU budget; 128 = 4 tokens x 32'),
    'w_dim': (128, 'CPU budget'),
    'rtm_dim': (32, 'tokens x rtm_dim = z_dim, as in the 1024-d default'),
    'dec_blocks': ('1x2,4m1,4x2,8m4,8x2,16m8,16x2', 'CPU budget: the official structure at 16 px with 2 blocks per '
                   'resolution instead of 4, 4, 4, 3'),
    'width': (32, 'CPU budget'),
    'batch': (64, 'batch 4 leaves 2 CPU cores idle; 64 uses them'),
    'lr': (1e-3, 'with batch 64 there are 16x fewer steps than at batch 4'),
    'ema': (0.999, '0.9999 averages over 10k steps, longer than the whole run'),
    'ema_rampup': (True, 'so the EMA forgets the random initial weights early in a short run'),
    'shuffle': (True, 'batches of 64 from 1000 images: reshuffle each epoch'),
    'pool_multiple': (1, 'pool = 20 x N exactly'),
    'force_resample': (10, 'the run is only 100 epochs; re-matching every 30 would happen 4 times'),
    'kimg': (100.0, 'fits the 10-minute budget on 2 cores with room to spare'),
}

DEFAULT_RUN = replace(FEWSHOT, **{k: v for k, (v, _) in DEFAULT_RUN_REASONS.items()})
DEFAULT_NUM_IMAGES = 1000           # Stacked Digits training images of the embedded run: one per mode

def config_from_dict(d):
    """An IMLEConfig from a checkpoint's dict, ignoring keys this version does not know."""
    if d.get('decoder') == 'convnext' and 'noise' not in d:
        raise ValueError('this snapshot uses the ConvNeXt decoder of before App. C (4x4 constant, 2 blocks per '
                         'resolution): its G and G_ema load and sample, but training cannot resume with it')
    names = {f.name for f in fields(IMLEConfig)}
    return IMLEConfig(**{k: v for k, v in d.items() if k in names})

def as_dict(cfg):
    return asdict(cfg)

def settings_table():
    """The README's settings table: each official default with its source, and the default run's changes."""
    rows = ['| setting | few-shot default | source (SerChirag/rs-imle) | default run | why |', '|---|---|---|---|---|']
    for name in list(OFFICIAL_SOURCES) + [k for k in DEFAULT_RUN_REASONS if k not in OFFICIAL_SOURCES]:
        source = OFFICIAL_SOURCES.get(name, (None, 'ours'))[1]
        run, why = DEFAULT_RUN_REASONS.get(name, (None, ''))
        run = '' if name not in DEFAULT_RUN_REASONS else f'`{run}`'
        rows.append(f'| `{name}` | `{getattr(FEWSHOT, name)}` | {source} | {run} | {why} |')
    return '\n'.join(rows)
