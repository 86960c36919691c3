"""The RS-IMLE training loop (Vashist et al., ECCV 2024, after the official SerChirag/rs-imle train.py).

Every `force_resample` epochs: draw a pool of ceil(force_factor * N) latents, render it with the current
generator, drop pool samples within eps of any data point, give each data point the latent of its nearest
surviving sample plus 0.001 * N(0, I). Between re-matches: minimise LPIPS + 0.1 MSE between G(latent_i) and
x_i with AdamW (official) or Adam (the paper), keeping an EMA of G.

Everything random is drawn from generators seeded by (seed, purpose, counter), never from a global stream,
so a run resumed from any snapshot takes exactly the steps the uninterrupted run takes, and K processes
(torchrun) draw the same pool, order and noise as one.
"""

import copy
import glob
import hashlib
import json
import math
import os
import signal
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from rtm_plugin.files import atomic_write
from rtm_plugin.imle import distributed as D
from rtm_plugin.imle.checkpoint import (OPTIONS_FILE, Snapshot, find_resume, remove_stale_temporaries, rng_state,
                                        save_snapshot, set_rng_state, snapshot_name)
from rtm_plugin.imle.config import as_dict, config_from_dict
from rtm_plugin.imle.ema import ema_beta, ema_warning
from rtm_plugin.imle.features import RandomProjection
from rtm_plugin.imle.generator import NoDiscriminator, build_generator
from rtm_plugin.imle.matching import NO_MATCH, match_shard, merge_matches, pool_size
from rtm_plugin.imle.optim import build_optimizer
from rtm_plugin.imle.perceptual import ReconstructionLoss, build_perceptual
from rtm_plugin.imle.precision import autocast, check_amp, grad_scaler
from rtm_plugin.imle.render import project_images, render_features
from rtm_plugin.imle.runlog import TensorBoard, TickStats, append_json, jsonable, repair
from rtm_plugin.sampling import (GRID, INIT, NOISE, ORDER, PERTURB, POOL, POOL_NOISE, PROJECTION, generate,
                                 noise_seeds, seeded, to_signed, to_uint8)
from rtm_plugin.snapshots import SNAPSHOT_RE

def learning_rate(cfg, step, num_images):
    """Linear warm-up over warmup_iters steps, then StepLR by completed epochs (as the official scheduler)."""
    warm = min(1.0, (step + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    epochs = step * cfg.batch // num_images
    return cfg.lr * warm * cfg.lr_decay_gamma ** (epochs // cfg.lr_decay_epochs)

def dataset_fingerprint(images_u8):
    """sha1 of the images' bytes (C order), read a slice at a time: a memory-mapped dataset is never copied whole."""
    h = hashlib.sha1()
    for i in range(0, len(images_u8), 256):
        h.update(np.ascontiguousarray(images_u8[i:i + 256]).tobytes())
    return h.hexdigest()


def loss_kind(loss_name):
    """'lpips-vgg' or 'multiscale-gradient-l1' from a loss description such as 'lpips-vgg (v0.1: ...)'."""
    return (loss_name or '').split(' ')[0] or None

class Diverged(RuntimeError):
    """The loss or the weights stopped being finite."""

class MetricFailed(RuntimeError):
    """A metric could not be computed (detector weights not found, bad reals): not a failed write."""

@dataclass
class RunOptions:
    outdir: str
    snap_kimg: float = 50.0         # snapshot every this many kimg (and at the end, and on Ctrl-C/SIGTERM)
    grid_kimg: float = 10.0         # sample grid every this many kimg
    tick_kimg: float = 4.0          # a stats.jsonl / metrics.jsonl line and a status line every this many kimg
    device: str = 'auto'            # distributed.select_device: CUDA when available (cuda:$LOCAL_RANK), else CPU
    amp: str = 'off'                # mixed precision for decoder and loss: 'off' | 'bf16' | 'fp16' (precision.py)
    pool_batch: int = 256           # images per batch when rendering the pool and projecting features
    perceptual: str = 'auto'
    lpips_vgg: str = None
    lpips_lin: str = None
    progress: bool = True
    grid_size: int = 8              # the grid is grid_size x grid_size samples
    training_set_kwargs: dict = None
    run_id: str = None              # None: a new id (a resumed run keeps its snapshot's)
    metrics: tuple = ()             # metric names evaluated at each snapshot (snapshot_metrics.calc_metric)
    metric_reals: object = None     # uint8 reals for those metrics [default: the training images]
    snapshot_unit: str = 'kimg'     # 'step' only for runs started by earlier versions
    allow_changes: bool = False     # resume even where a setting that affects the numbers changed (not exact)
    extra: dict = field(default_factory=dict)   # more settings to record (the CLI's evaluation options)

    def recorded(self):
        """What snapshots and training_options.json keep (no arrays)."""
        keep = ('snap_kimg', 'grid_kimg', 'tick_kimg', 'device', 'amp', 'pool_batch', 'perceptual', 'lpips_vgg',
                'lpips_lin', 'grid_size', 'metrics', 'snapshot_unit')
        return {**{k: getattr(self, k) for k in keep}, 'metrics': list(self.metrics), **self.extra}

class Trainer:
    def __init__(self, cfg, images_u8, opts, resume=None, log=print):
        """resume: a snapshot path, a run folder, or a loaded checkpoint.Snapshot."""
        self.cfg, self.opts, self.log = cfg, opts, log
        self.device = D.select_device(opts.device)
        self.amp = check_amp(opts.amp, self.device)
        self.rank, self.world = D.init_from_env(self.device)
        if cfg.batch % self.world:
            raise ValueError(f'batch {cfg.batch} must be divisible by the number of processes ({self.world})')
        with warnings.catch_warnings():     # a read-only memmap (datacache.py): shared, never written
            warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
            self.images = torch.as_tensor(np.ascontiguousarray(images_u8))
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.dtype != torch.uint8:
            raise ValueError(f'expected uint8 images [N, 3, R, R], got {self.images.dtype} {list(self.images.shape)}')
        if self.images.shape[-1] != cfg.resolution:
            raise ValueError(f'images are {self.images.shape[-1]} px but the config says resolution={cfg.resolution}')
        self.num = len(self.images)
        self.fingerprint = dataset_fingerprint(images_u8)
        self.stop_requested = False
        self.run_id = opts.run_id or uuid.uuid4().hex[:12]
        self.resumed_from = None
        self.last_snapshot = None       # the newest snapshot of this run on disk

        torch.manual_seed(cfg.seed)
        self.G = build_generator(cfg).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt = build_optimizer(cfg, self.G.parameters())
        self.scaler = grad_scaler(self.device, self.amp)
        self.latents = torch.randn([self.num, cfg.z_dim], generator=seeded(cfg.seed, INIT))
        self.step, self.matched_round = 0, -1
        perceptual, self.loss_name = build_perceptual(opts.perceptual, opts.lpips_vgg, opts.lpips_lin,
                                                      log=self.log if self.rank == 0 else (lambda m: None))
        if resume is not None:
            self._restore(resume if isinstance(resume, Snapshot) else find_resume(resume, log=self.log))
        self.threads = torch.get_num_threads()
        cuda = [self.device] if self.device.type == 'cuda' else None
        self.G_train = (DistributedDataParallel(self.G, device_ids=cuda) if self.world > 1 else self.G)
        self.loss_fn = ReconstructionLoss(perceptual, cfg.lpips_coef, cfg.l2_coef).to(self.device)
        self.projection = RandomProjection(self.images.shape[1:], cfg.proj_dim, seed=int(
            torch.randint(2**31, [1], generator=seeded(cfg.seed, PROJECTION)))).to(self.device)
        own = self.images[D.shard(self.num, self.rank, self.world)]
        self.data_features = D.all_gather_cat(project_images(own, self.projection, self.device, opts.pool_batch))
        self.pool = pool_size(self.num, cfg.force_factor, cfg.pool_multiple)
        self.total_steps = math.ceil(cfg.kimg * 1000 / cfg.batch)
        if self.rank == 0 and (warning := ema_warning(cfg, self.total_steps)):
            log(warning)
        self._order_cache = {}
        self.stats = TickStats()
        self.metric_results = {}        # the latest --metrics results, for TensorBoard

    @property
    def kimg(self):
        return self.step * self.cfg.batch / 1000

    # ------------------------------------------------------------------ schedule and order
    def match_round(self, step):
        return step * self.cfg.batch // (self.num * self.cfg.force_resample)

    def epoch_order(self, epoch):
        if epoch not in self._order_cache:
            self._order_cache = {epoch: torch.randperm(self.num, generator=seeded(self.cfg.seed, ORDER, epoch))
                                 if self.cfg.shuffle else torch.arange(self.num)}
        return self._order_cache[epoch]

    def batch_indices(self, step):
        """The global batch of `step`: positions step*B ... in the endless stream of epoch orders."""
        positions = torch.arange(step * self.cfg.batch, (step + 1) * self.cfg.batch)
        epochs = positions // self.num
        return torch.cat([self.epoch_order(int(e))[positions[epochs == e] % self.num] for e in epochs.unique()])

    # ------------------------------------------------------------------ RS-IMLE matching
    def rematch(self, round_index):
        t0 = time.time()
        cfg = self.cfg
        z_pool = torch.randn([self.pool, cfg.z_dim], generator=seeded(cfg.seed, POOL, round_index))
        own = D.shard(self.pool, self.rank, self.world)
        seeds = noise_seeds(cfg.seed, POOL_NOISE, round_index, self.pool)[own] if cfg.noise else None
        feats = render_features(self.G, z_pool[own], self.projection, self.device, self.opts.pool_batch, self.amp,
                                seeds=seeds)
        D.synchronize(self.device)
        t_render = time.time()
        m = match_shard(self.data_features, feats, cfg.eps, offset=own.start,
                        max_elements=cfg.knn_max_elements, backend=cfg.knn_backend)
        index, sq_dist = merge_matches(D.all_gather_stack(m.index), D.all_gather_stack(m.sq_dist))
        index, sq_dist = index.cpu(), sq_dist.cpu()
        rejected = int(D.all_reduce_sum(m.num_rejected, self.device))
        t_match = time.time()
        noise = torch.randn([self.num, cfg.z_dim], generator=seeded(cfg.seed, PERTURB, round_index))
        ok = index != NO_MATCH
        self.latents[ok] = z_pool[index[ok]] + cfg.perturb * noise[ok]
        self.matched_round = round_index
        dist = sq_dist[ok].sqrt()
        record = dict(kind='match', step=self.step, round=round_index, pool=self.pool, rejected=rejected,
                      rejected_frac=rejected / self.pool, unmatched=int((~ok).sum()),
                      distinct_samples=int(index[ok].unique().numel()),
                      mean_dist=float(dist.mean()) if len(dist) else None, seconds=time.time() - t0,
                      # throughput: this rank rendered its shard while the others rendered theirs
                      render_seconds=t_render - t0, pool_img_per_s=self.pool / max(t_render - t0, 1e-9),
                      match_seconds=t_match - t_render)
        self.stats.report('IMLE/rejected_frac', record['rejected_frac'])
        self.stats.report('IMLE/unmatched', record['unmatched'])
        if len(dist):
            self.stats.report('IMLE/match_dist', dist)
        self.stats.report('Timing/match_sec', record['seconds'])
        self.stats.report('Throughput/pool_img_per_s', record['pool_img_per_s'])
        return record

    # ------------------------------------------------------------------ one optimisation step
    def train_step(self):
        cfg = self.cfg
        idx = self.batch_indices(self.step).tensor_split(self.world)[self.rank]
        x = to_signed(self.images[idx].to(self.device, non_blocking=True))    # uint8 crosses, not float
        z = self.latents[idx].to(self.device)
        lr = learning_rate(cfg, self.step, self.num)
        for group in self.opt.param_groups:
            group['lr'] = lr
        kw = dict(noise_seeds=noise_seeds(cfg.seed, NOISE, self.step, cfg.batch).tensor_split(self.world)[self.rank]
                  ) if cfg.noise else {}
        with autocast(self.device, self.amp):       # decoder and loss; the mapper stays fp32 (generator.py)
            per_sample = self.loss_fn(self.G_train(z, **kw), x)
        bad = not bool(torch.isfinite(per_sample).all())
        if D.any_rank(bad, self.device) if self.world > 1 else bad:      # before the step: G stays as it was
            raise Diverged(f'the loss became {per_sample.detach().float().sum().item()} at step {self.step} '
                           f'(kimg {self.kimg:.3f})')
        loss = per_sample.mean()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()          # the scaler is a pass-through unless --amp fp16
        self.scaler.step(self.opt)
        self.scaler.update()
        beta = ema_beta(cfg, self.step)
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.step += 1
        self.stats.report('Loss/G/loss', per_sample)
        self.stats.report('Progress/lr', lr)
        return loss.detach().item(), lr

    # ------------------------------------------------------------------ snapshots
    def run_options(self):
        """Everything besides the config that the numbers depend on, and the run's other settings."""
        return dict(self.opts.recorded(), device=str(self.device), threads=self.threads, loss=self.loss_name,
                    run_id=self.run_id)

    def snapshot_dict(self):
        cpu = lambda m: copy.deepcopy(m).cpu().eval().requires_grad_(False)
        return dict(G=cpu(self.G), G_ema=cpu(self.G_ema), D=NoDiscriminator(), augment_pipe=None,
                    training_set_kwargs=self.opts.training_set_kwargs,
                    rs_imle=dict(config=as_dict(self.cfg), step=self.step, kimg=self.kimg,
                                 matched_round=self.matched_round, latents=self.latents.clone(),
                                 optimizer=self.opt.state_dict(), scaler=self.scaler.state_dict(),
                                 rng=rng_state(), world_size=self.world,
                                 dataset_fingerprint=self.fingerprint, num_images=self.num, loss=self.loss_name,
                                 run_id=self.run_id, options=self.run_options()))

    def snapshot_path(self):
        return os.path.join(self.opts.outdir, snapshot_name(self.step, self.cfg.batch, self.opts.snapshot_unit))

    def save(self, metrics=True):
        """Write a snapshot (rank 0) and evaluate --metrics on it; never a snapshot of non-finite weights."""
        for name, module in (('G', self.G), ('G_ema', self.G_ema)):
            if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
                raise Diverged(f'{name} has non-finite weights at step {self.step} (kimg {self.kimg:.3f})')
        evaluate = metrics and bool(self.opts.metrics)
        path = None
        if self.rank == 0:
            path = self.snapshot_path()
            save_snapshot(path, self.snapshot_dict())
            self.last_snapshot = path
            if evaluate:
                self.evaluate_metrics(path)
        if evaluate:            # rank 0 evaluates alone: the others wait here, not in a collective that times out
            D.long_barrier()
        return path

    def evaluate_metrics(self, snapshot_pkl, names=None):
        """Each metric (default: --metrics) of G_ema into metric-<name>.jsonl; returns their results."""
        from rtm_plugin.imle.snapshot_metrics import calc_metric, report_metric
        reals = self.opts.metric_reals if self.opts.metric_reals is not None else self.images
        self.log('evaluating metrics...')
        results = {}
        for metric in (self.opts.metrics if names is None else names):
            try:
                result = calc_metric(metric, G=self.G_ema, real=reals, device=str(self.device), seed=self.cfg.seed)
            except (ValueError, OSError) as e:     # e.g. a detector that cannot be downloaded (an OSError)
                raise MetricFailed(f'{metric}: {e}') from e
            report_metric(result, run_dir=self.opts.outdir, snapshot_pkl=snapshot_pkl)
            self.metric_results.update(result['results'])
            results.update(result['results'])
            self.log(f'{metric}: ' + ', '.join(f'{k} {v:.4f}' for k, v in result['results'].items())
                     + f' ({result["total_time_str"]})')
        return results

    def _restore(self, snapshot):
        """Continue from a loaded Snapshot. Every setting that changes the numbers must match, or be restorable
        (threads); otherwise an error names it, unless opts.allow_changes."""
        data, state, path = snapshot.data, snapshot.state, snapshot.path
        if state is None:
            raise ValueError(f'{path}: a generator pickle without RS-IMLE training state; cannot resume from it')
        if state['dataset_fingerprint'] != self.fingerprint:
            raise ValueError(f'{path}: was trained on different data ({state["num_images"]} images, other '
                             f'content; now {self.num} images); point --data at the run\'s dataset')
        saved, options = config_from_dict(state['config']), snapshot.options
        now = as_dict(self.cfg)
        diff = {k: (v, now[k]) for k, v in as_dict(saved).items() if k != 'kimg' and now[k] != v}
        if options.get('device') and torch.device(options['device']).type != self.device.type:
            diff['device'] = (options['device'], str(self.device))
        if state.get('world_size', self.world) != self.world:     # shards, gradient sums and w_avg's batch change
            diff['world_size'] = (state['world_size'], self.world)
        if options.get('amp', 'off') != self.amp:
            diff['amp'] = (options.get('amp', 'off'), self.amp)
        if loss_kind(state.get('loss')) and loss_kind(state['loss']) != loss_kind(self.loss_name):
            diff['loss'] = (loss_kind(state['loss']), loss_kind(self.loss_name))
        threads = options.get('threads')
        if threads and threads != torch.get_num_threads() and not self.opts.allow_changes:
            torch.set_num_threads(threads)                      # the thread count changes float sums
        if diff and not self.opts.allow_changes:
            raise ValueError(f'{path}: settings differ from the snapshot (snapshot, now): {diff}; resume with the '
                             f"snapshot's settings, or allow the change (--inexact-resume: not bit-exact)")
        if diff:
            self.log(f'resume: changed from the snapshot (snapshot, now): {diff}; the run is no longer exact')
        self.G.load_state_dict(data['G'].state_dict())
        self.G_ema.load_state_dict(data['G_ema'].state_dict())
        self.opt.load_state_dict(state['optimizer'])
        if state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        self.latents = state['latents'].clone()
        self.step, self.matched_round = state['step'], state['matched_round']
        self.run_id = state.get('run_id') or self.opts.run_id or self.run_id
        set_rng_state(state['rng'])
        self.resumed_from = self.last_snapshot = path

    # ------------------------------------------------------------------ run folder
    def write_metrics(self, record):
        if self.rank == 0:
            append_json(os.path.join(self.opts.outdir, 'metrics.jsonl'), record)

    def write_options(self):
        """training_options.json: every resolved setting, the run id and the data, as upstream writes it."""
        if self.rank != 0:
            return
        text = json.dumps(jsonable(dict(config=as_dict(self.cfg), **self.run_options(),
                                        training_set_kwargs=self.opts.training_set_kwargs,
                                        dataset_fingerprint=self.fingerprint, num_images=self.num,
                                        num_gpus=self.world, run_dir=os.path.abspath(self.opts.outdir))),
                          indent=2, sort_keys=True)
        atomic_write(os.path.join(self.opts.outdir, OPTIONS_FILE), text + '\n')

    def repair_logs(self):
        """On resume: delete the temporaries of interrupted writes, drop torn log lines and what was logged
        after the snapshot (a killed run may have logged steps past its last snapshot)."""
        if self.rank != 0:
            return
        out = self.opts.outdir
        for name in remove_stale_temporaries(out):
            self.log(f'resume: removed {name}, left by an interrupted write')
        number = lambda p: int(m.group(1)) if (m := SNAPSHOT_RE.search(p or '')) else -1
        here = number(self.resumed_from)
        kept = {'metrics.jsonl': lambda r: r.get('step', 0) <= self.step and r.get('kind') not in ('eval',),
                'stats.jsonl': lambda r: r.get('Progress/kimg', {}).get('mean', 0) <= self.kimg + 1e-9}
        for path in sorted(glob.glob(os.path.join(glob.escape(out), 'metric-*.jsonl'))):
            kept[os.path.basename(path)] = lambda r: number(r.get('snapshot_pkl')) <= here
        for name, keep in kept.items():
            dropped = repair(os.path.join(out, name), keep)
            if dropped:
                self.log(f'resume: {name}: dropped {dropped} line(s) logged after the snapshot or torn')

    def save_grid(self, name=None):
        if self.rank != 0:
            return
        from rtm_plugin.image_grid import save_grid
        n = self.opts.grid_size
        z = torch.randn([n * n, self.cfg.z_dim], generator=seeded(self.cfg.seed, GRID))
        save_grid(os.path.join(self.opts.outdir, name or f'fakes{self.step * self.cfg.batch // 1000:06d}.png'),
                  to_uint8(generate(self.G_ema, z, seeds=torch.arange(n * n) if self.cfg.noise else None)), n)

    def tick(self, tick_index, t_start, t_tick, nimg_tick, maintenance, t_matching, tensorboard, bar):
        """Upstream's per-tick report: a status line, a stats.jsonl line, TensorBoard scalars."""
        now = time.time()
        images = self.step * self.cfg.batch - nimg_tick
        train_img_per_s = images / max(now - t_tick - t_matching, 1e-9)    # re-matches are timed on their own
        s = self.stats
        s.report('Throughput/train_img_per_s', train_img_per_s)
        s.report('Progress/tick', tick_index)
        s.report('Progress/kimg', self.kimg)
        s.report('Timing/total_sec', now - t_start)
        s.report('Timing/sec_per_tick', now - t_tick)
        s.report('Timing/sec_per_kimg', (now - t_tick) / max(self.step * self.cfg.batch - nimg_tick, 1) * 1e3)
        s.report('Timing/maintenance_sec', maintenance)
        rss = _rss_gb()
        if rss is not None:
            s.report('Resources/cpu_mem_gb', rss)
        stats = s.as_dict()
        loss = stats.get('Loss/G/loss', {}).get('mean', float('nan'))
        line = (f'tick {tick_index:<5d} kimg {self.kimg:<8.1f} time {now - t_start:<8.0f}s '
                f'sec/tick {now - t_tick:<7.1f} sec/kimg {stats["Timing/sec_per_kimg"]["mean"]:<7.2f} '
                f'loss {loss:.4f}')
        if self.rank == 0:
            bar.write(line, file=sys.stderr) if not bar.disable else self.log(line)
            append_json(os.path.join(self.opts.outdir, 'stats.jsonl'), dict(stats, timestamp=now))
            tensorboard.write(stats, self.metric_results, self.kimg, now)
        tick_steps = max(1, (self.step * self.cfg.batch - nimg_tick) // self.cfg.batch)
        self.write_metrics(dict(kind='train', step=self.step, kimg=self.kimg, loss=loss,
                                lr=stats.get('Progress/lr', {}).get('mean'), sec_per_step=(now - t_tick) / tick_steps,
                                train_img_per_s=train_img_per_s))

    # ------------------------------------------------------------------ the loop
    def _on_signal(self, signum, frame):
        self.stop_requested = True

    def run(self):
        """Train to cfg.kimg. Returns (status, snapshot path): 'done', 'interrupted' (Ctrl-C/SIGTERM: a snapshot
        was saved) or 'diverged' (no snapshot of the bad state; the path is the last good one, or None)."""
        cfg, opts = self.cfg, self.opts
        if self.rank == 0:
            os.makedirs(opts.outdir, exist_ok=True)
        if self.resumed_from is None and self.step == 0 and self.rank == 0:
            from rtm_plugin.image_grid import save_grid
            n = opts.grid_size
            save_grid(os.path.join(opts.outdir, 'reals.png'), self.images[:n * n], n)
            self.save_grid('fakes_init.png')
        else:
            self.repair_logs()
        self.write_options()
        every = lambda kimg: max(1, round(kimg * 1000 / cfg.batch))
        snap_every, grid_every, tick_every = every(opts.snap_kimg), every(opts.grid_kimg), every(opts.tick_kimg)
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        from tqdm import tqdm
        bar = tqdm(total=self.total_steps, initial=min(self.step, self.total_steps), unit='step',
                   disable=not opts.progress or self.rank != 0, dynamic_ncols=True)
        tensorboard = TensorBoard(opts.outdir, time.time()) if self.rank == 0 else None
        status, path = 'done', None
        t_start = t_tick = time.time()
        tick_index, nimg_tick, maintenance, t_matching = 0, self.step * cfg.batch, 0.0, 0.0
        try:
            while self.step < self.total_steps:
                round_index = self.match_round(self.step)
                if round_index > self.matched_round:
                    record = self.rematch(round_index)
                    t_matching += record['seconds']
                    self.write_metrics(record)
                    if self.rank == 0:
                        self.log(f'match round {round_index}: pool of {record["pool"]} rendered in '
                                 f'{record["render_seconds"]:.1f} s ({record["pool_img_per_s"]:.0f} img/s), '
                                 f'matched in {record["match_seconds"]:.1f} s, {record["rejected_frac"]:.1%} rejected')
                    bar.set_postfix_str(f'matched round {round_index}: {record["rejected_frac"]:.1%} rejected')
                loss, lr = self.train_step()
                bar.update(1)
                t_work = time.time()
                if self.step % tick_every == 0 or self.step == self.total_steps:
                    self.tick(tick_index, t_start, t_tick, nimg_tick, maintenance, t_matching, tensorboard, bar)
                    tick_index, nimg_tick, t_tick, t_matching = tick_index + 1, self.step * cfg.batch, time.time(), 0.0
                    bar.set_postfix(loss=f'{loss:.4f}')
                if self.step % grid_every == 0:
                    self.save_grid()
                if self.step % snap_every == 0:
                    path = self.save()
                maintenance += time.time() - t_work
                if D.any_rank(self.stop_requested, self.device) if self.world > 1 else self.stop_requested:
                    status = 'interrupted'
                    break
            if self.step % grid_every:
                self.save_grid()
            if self.step % snap_every or status == 'interrupted':
                path = self.save(metrics=status == 'done')
            else:
                path = self.snapshot_path()
        except Diverged as e:
            self.write_metrics(dict(kind='diverged', step=self.step, kimg=self.kimg, reason=str(e)))
            self.divergence = str(e)
            status, path = 'diverged', self.last_snapshot
        finally:
            bar.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if tensorboard is not None:
                tensorboard.close()
        return status, path

def _rss_gb():
    """Resident memory of this process in GiB (Linux), else None."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30
    except (OSError, ValueError, IndexError):
        return None
