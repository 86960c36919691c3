"""End-to-end RS-IMLE training: a short CLI run with metrics, resume equivalence, Ctrl-C/SIGTERM, errors."""

import json
import os
import signal
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from imle_tiny import TINY, assert_same_state, one_thread, state_of, tiny_images  # noqa: F401 (one_thread: a fixture)
from rtm_plugin.snapshots import latest_snapshot, load_snapshot
from rtm_plugin.imle.cli import main
from rtm_plugin.imle.train import RunOptions, Trainer, learning_rate

pytestmark = pytest.mark.usefixtures('one_thread')

def opts(outdir, **kw):
    return RunOptions(outdir=str(outdir), snap_kimg=kw.pop('snap_kimg', 1000), grid_kimg=kw.pop('grid_kimg', 1000),
                      perceptual='fallback', progress=False, **kw)

def run(cfg, images, outdir, resume=None, **kw):
    t = Trainer(cfg, images, opts(outdir, **kw), resume=resume, log=lambda m: None)
    status, path = t.run()
    return t, status, path

def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    """2k steps in one go vs k, then --resume for k more (k = 100 here, to keep the suite fast; k = 1000 passes
    too): identical G, G_ema and matched latents. The pool is re-matched every epoch (3 steps), so the resume
    crosses re-matches and epoch boundaries."""
    images = tiny_images()
    steps = 200
    full = replace(TINY, kimg=steps * TINY.batch / 1000)
    half = replace(TINY, kimg=steps // 2 * TINY.batch / 1000 + 0.001)   # stops at step 1001: mid-epoch
    a, status, _ = run(full, images, tmp_path / 'a')
    assert status == 'done' and a.step == steps and a.matched_round == a.match_round(steps - 1) > 60
    b, _, path = run(half, images, tmp_path / 'b')
    assert b.step == steps // 2 + 1 and path.endswith('network-snapshot-000000.pkl')     # 808 images: kimg 0
    c, status, _ = run(full, images, tmp_path / 'b', resume=path)
    assert status == 'done' and c.step == steps
    assert_same_state(state_of(a), state_of(c))
    lines = [json.loads(l) for l in open(tmp_path / 'b' / 'metrics.jsonl')]
    assert [l['round'] for l in lines if l['kind'] == 'match'] == list(range(a.matched_round + 1))

def test_sigterm_saves_a_snapshot_that_resumes_exactly(tmp_path):
    images = tiny_images()
    cfg = replace(TINY, kimg=400 * TINY.batch / 1000)
    a, _, _ = run(cfg, images, tmp_path / 'a')
    t = Trainer(cfg, images, opts(tmp_path / 'b'), log=lambda m: None)
    original_step = t.train_step

    def step_then_signal():
        out = original_step()
        if t.step == 37:                                            # as if Ctrl-C arrived during step 37
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    t.train_step = step_then_signal
    status, path = t.run()
    assert status == 'interrupted' and t.step == 37 and path.endswith('network-snapshot-000000.pkl')
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL       # handlers restored
    c, status, _ = run(cfg, images, tmp_path / 'b', resume=str(tmp_path / 'b'))
    assert status == 'done'
    assert_same_state(state_of(a), state_of(c))

def test_resume_refuses_other_settings_or_data(tmp_path):
    images = tiny_images()
    _, _, path = run(TINY, images, tmp_path / 'a')
    with pytest.raises(ValueError, match=r"settings differ from the snapshot.*'eps': \(0\.3, 0\.2\)"):
        Trainer(replace(TINY, eps=0.2), images, opts(tmp_path / 'a'), resume=path)
    with pytest.raises(ValueError, match='different data'):
        Trainer(TINY, tiny_images(seed=1), opts(tmp_path / 'a'), resume=path)

def test_resume_refuses_another_number_of_processes(tmp_path):
    """A snapshot of a 2-process run resumed by 1 process: per-rank batch shards, DDP's gradient sums and w_avg
    (rank 0's half batch) change the numbers, so it is named like any other change, unless allowed."""
    from rtm_plugin.imle.checkpoint import save_snapshot
    images = tiny_images()
    _, _, path = run(TINY, images, tmp_path / 'a')
    data = load_snapshot(path)
    data['rs_imle']['world_size'] = 2                               # as torchrun --nproc_per_node=2 wrote it
    save_snapshot(path, data)
    with pytest.raises(ValueError, match=r"settings differ from the snapshot.*'world_size': \(2, 1\)"):
        Trainer(TINY, images, opts(tmp_path / 'a'), resume=path)
    Trainer(TINY, images, opts(tmp_path / 'a', allow_changes=True), resume=path)

def test_snapshot_contents(tmp_path):
    t, _, path = run(TINY, tiny_images(), tmp_path / 'a')
    data = load_snapshot(path)
    assert {'G', 'G_ema', 'D', 'augment_pipe', 'training_set_kwargs', 'rs_imle'} <= set(data)
    state = data['rs_imle']
    assert state['step'] == t.step == 10 and state['config']['eps'] == 0.3
    assert torch.equal(state['latents'], t.latents)
    G = data['G_ema']
    assert G.training is False and not any(p.requires_grad for p in G.parameters())
    for name in ('reals.png', 'fakes_init.png', 'fakes000000.png', 'training_options.json', 'stats.jsonl'):
        assert os.path.exists(tmp_path / 'a' / name), name

def test_learning_rate_schedule():
    cfg = replace(TINY, lr=1.0, warmup_iters=10, lr_decay_epochs=2, lr_decay_gamma=0.5, batch=8)
    n = 16                                                          # 2 steps per epoch
    assert learning_rate(cfg, 0, n) == pytest.approx(0.1)
    assert learning_rate(cfg, 3, n) == pytest.approx(0.4)           # warm-up (epoch 1, no decay yet)
    assert learning_rate(cfg, 9, n) == pytest.approx(0.5 ** 2)      # epoch 4: two decays
    assert learning_rate(cfg, 12, n) == pytest.approx(0.5 ** 3)

def test_batch_must_split_across_processes_and_images_must_fit(tmp_path):
    with pytest.raises(ValueError, match='resolution=32'):
        Trainer(replace(TINY, resolution=32), tiny_images(), opts(tmp_path))

def test_cli_end_to_end_with_metrics(tmp_path):
    """The embedded default run, shortened: trains, snapshots, evaluates with the digit classifier."""
    result = CliRunner().invoke(main, [
        '--outdir', str(tmp_path), '--kimg', '0.2', '--num-images', '64', '--batch', '16', '--z-dim', '16',
        '--w-dim', '16', '--width', '8', '--rtm-h', '2', '--rtm-l', '1', '--force-factor', '2',
        '--eval-samples', '200', '--no-progress', '--perceptual', 'fallback'])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / '00000-digits-rtm'
    last = result.output.strip().splitlines()[-1]
    assert last.startswith('rtm: modes ') and 'KL' in last and 'FID' in last and 'coverage' in last
    lines = [json.loads(l) for l in open(run_dir / 'metrics.jsonl')]
    kinds = [l['kind'] for l in lines]
    assert kinds[0] == 'match' and 'train' in kinds and kinds[-1] == 'eval'
    ev = lines[-1]
    assert 0 <= ev['modes'] <= 1000 and ev['fid'] > 0 and {'precision', 'recall', 'density', 'coverage'} <= set(ev)
    assert latest_snapshot(str(run_dir)).endswith('network-snapshot-000000.pkl')     # 13 steps of 16: kimg 0
    assert load_snapshot(latest_snapshot(str(run_dir)))['G_ema'].mapping.trunk.H == 2

def test_cli_errors_are_usage_errors(tmp_path):
    (tmp_path / 'empty').mkdir()
    result = CliRunner().invoke(main, ['--data', str(tmp_path / 'empty'), '--outdir', str(tmp_path)])
    assert result.exit_code == 2 and 'no images found' in result.output
