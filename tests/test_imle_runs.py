"""rtm-imle run folders and resume through the command line: exact resume from the printed command, the loss and
the data a run was trained with, snapshots of other runs and of earlier versions, divergence, one-line errors,
and the StyleGAN2-ADA run-folder files (training_options.json, log.txt, stats.jsonl, TensorBoard, metrics)."""

import importlib.util
import io
import json
import os
import re
import shutil
import signal
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from imle_tiny import (TINY, TINY_CLI, assert_same_state, invoke, only_run_dir, snapshot_state, tiny_images,
                       write_png_folder)
from rtm_plugin.imle.checkpoint import save_snapshot
from rtm_plugin.imle.perceptual import LPIPS_CHANNELS, vgg16_features
from rtm_plugin.imle.train import RunOptions, Trainer
from rtm_plugin.snapshots import latest_snapshot, load_snapshot

@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)

def sigterm_at(monkeypatch, step, seen_threads=None):
    """As if Ctrl-C / SIGTERM arrived during training step `step`; records the thread count of every step."""
    original = Trainer.train_step

    def train_step(self):
        out = original(self)
        if seen_threads is not None:
            seen_threads.add(torch.get_num_threads())
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    monkeypatch.setattr(Trainer, 'train_step', train_step)

def interrupt(monkeypatch, args, step=4):
    with monkeypatch.context() as m:
        sigterm_at(m, step)
        result = invoke(args)
    assert result.exit_code == 130, result.output
    return re.search(r'continue with (--resume \S+)', result.output).group(1).split()

@pytest.fixture(scope='module')
def lpips_files(tmp_path_factory):
    """LPIPS weight files in the right layouts (random values), so 'auto' finds LPIPS."""
    folder = tmp_path_factory.mktemp('lpips')
    gen = torch.Generator().manual_seed(0)
    vgg = {f'features.{k}': torch.randn(v.shape, generator=gen) * 0.05 for k, v in vgg16_features().state_dict().items()}
    lin = {f'lin{i}.model.1.weight': torch.rand([1, c, 1, 1], generator=gen) for i, c in enumerate(LPIPS_CHANNELS)}
    torch.save(vgg, folder / 'vgg16.pth')
    torch.save(lin, folder / 'vgg.pth')
    return str(folder / 'vgg16.pth'), str(folder / 'vgg.pth')

def use_lpips(monkeypatch, files):
    monkeypatch.setenv('RTM_LPIPS_VGG', files[0])
    monkeypatch.setenv('RTM_LPIPS_LIN', files[1])

# ---------------------------------------------------------------------- exact resume
def test_default_run_resumes_exactly_from_the_printed_command(tmp_path, monkeypatch):
    """The printed `--resume <dir>` alone: the same thread count (1 in the default run) and the same weights as an
    uninterrupted run, although this process now has torch's default thread count."""
    args = [*TINY_CLI, '--perceptual', 'fallback']
    assert invoke(['--outdir', tmp_path / 'a', *args]).exit_code == 0
    command = interrupt(monkeypatch, ['--outdir', tmp_path / 'b', *args])
    torch.set_num_threads(2)                        # what a fresh process starts with on this machine
    seen = set()
    with monkeypatch.context() as m:
        sigterm_at(m, -1, seen)
        result = invoke(command)
    assert result.exit_code == 0, result.output
    assert seen == {1}
    a, b = only_run_dir(tmp_path / 'a'), only_run_dir(tmp_path / 'b')
    assert_same_state(snapshot_state(latest_snapshot(a)), snapshot_state(latest_snapshot(b)))

def test_data_run_resumes_exactly_with_the_loss_it_started_with(tmp_path, monkeypatch, lpips_files):
    """Started with --perceptual fallback where LPIPS weights exist: the resume must not switch to LPIPS."""
    use_lpips(monkeypatch, lpips_files)
    data = write_png_folder(tmp_path / 'data', tiny_images())
    args = ['--data', data, *TINY_CLI, '--perceptual', 'fallback']
    assert invoke(['--outdir', tmp_path / 'a', *args]).exit_code == 0
    command = interrupt(monkeypatch, ['--outdir', tmp_path / 'b', *args])
    result = invoke(command)
    assert result.exit_code == 0, result.output
    assert 'loss: multiscale-gradient-l1' in result.output
    a, b = only_run_dir(tmp_path / 'a'), only_run_dir(tmp_path / 'b')
    assert_same_state(snapshot_state(latest_snapshot(a)), snapshot_state(latest_snapshot(b)))

def test_a_loss_that_cannot_be_restored_is_an_error_unless_allowed(tmp_path, monkeypatch, lpips_files):
    with monkeypatch.context() as m:
        use_lpips(m, lpips_files)
        command = interrupt(monkeypatch, ['--outdir', tmp_path, *TINY_CLI])
    run_dir = only_run_dir(tmp_path)
    assert json.load(open(os.path.join(run_dir, 'training_options.json')))['loss'].startswith('lpips-vgg')
    before = sorted(os.listdir(run_dir))
    result = invoke(command)
    assert result.exit_code == 2
    assert 'trained with the LPIPS-VGG loss' in result.output and '--inexact-resume' in result.output
    assert sorted(os.listdir(run_dir)) == before                    # nothing written
    result = invoke([*command, '--inexact-resume'])
    assert result.exit_code == 0, result.output
    assert "'loss': ('lpips-vgg', 'multiscale-gradient-l1')" in result.output and 'no longer exact' in result.output

def test_resume_reuses_the_decoded_dataset(tmp_path, monkeypatch):
    """The memory-mapped copy of --data made by the run is the one its --resume maps: not decoded a second time."""
    cache = tmp_path / 'cache'
    monkeypatch.setenv('RTM_IMLE_DATA_CACHE', str(cache))
    data = write_png_folder(tmp_path / 'data', tiny_images())
    command = interrupt(monkeypatch, ['--outdir', tmp_path / 'runs', '--data', data, *TINY_CLI, '--perceptual',
                                      'fallback'])
    assert len(os.listdir(cache)) == 1
    result = invoke(command)
    assert result.exit_code == 0, result.output
    assert 'decoding once' not in result.output and len(os.listdir(cache)) == 1

def test_the_resumed_run_is_this_folders_run(tmp_path, monkeypatch):
    """A snapshot of another run with a higher number is skipped, named, and this run's logs stay."""
    command = interrupt(monkeypatch, ['--outdir', tmp_path, *TINY_CLI, '--perceptual', 'fallback'])
    run_dir = only_run_dir(tmp_path)
    own = latest_snapshot(run_dir)
    data = load_snapshot(own)
    data['rs_imle'].update(run_id='someoneelse', step=900)
    save_snapshot(os.path.join(run_dir, 'network-snapshot-000007.pkl'), data)
    lines = open(os.path.join(run_dir, 'metrics.jsonl')).read().splitlines()
    result = invoke(command)
    assert result.exit_code == 0, result.output
    assert 'skipped network-snapshot-000007.pkl (belongs to run someoneelse' in result.output
    after = open(os.path.join(run_dir, 'metrics.jsonl')).read().splitlines()
    assert after[:len(lines)] == lines

def test_resume_finds_the_moved_dataset_by_its_fingerprint(tmp_path, monkeypatch):
    data = write_png_folder(tmp_path / 'data', tiny_images())
    command = interrupt(monkeypatch, ['--outdir', tmp_path / 'runs', '--data', data, *TINY_CLI,
                                      '--perceptual', 'fallback'])
    moved = str(tmp_path / 'moved')
    shutil.move(data, moved)
    result = invoke(command)
    assert result.exit_code == 2 and 'is not there any more; pass --data with its new location' in result.output
    other = write_png_folder(tmp_path / 'other', tiny_images(seed=1))
    result = invoke([*command, '--data', other])
    assert result.exit_code == 2 and 'different data' in result.output
    result = invoke([*command, '--data', moved])
    assert result.exit_code == 0, result.output
    options = json.load(open(os.path.join(only_run_dir(tmp_path / 'runs'), 'training_options.json')))
    assert options['training_set_kwargs']['path'] == os.path.abspath(moved)

def test_runs_of_earlier_versions_resume_from_step_named_snapshots(tmp_path):
    """Earlier versions named snapshots by step and stored no run id or options; such a run goes on, still
    naming its snapshots by step, so the folder sorts in training order."""
    t = Trainer(TINY, tiny_images(), RunOptions(outdir=str(tmp_path), perceptual='fallback', progress=False,
                                                snap_kimg=1000, grid_kimg=1000), log=lambda m: None)
    t.run()
    data = t.snapshot_dict()
    for key in ('run_id', 'options'):
        del data['rs_imle'][key]
    data['training_set_kwargs'] = dict(name='stacked_digits', num_images=24, resolution=16, seed=0)
    for name in os.listdir(tmp_path):
        os.remove(tmp_path / name)
    save_snapshot(str(tmp_path / 'network-snapshot-000010.pkl'), data)
    result = invoke(['--resume', tmp_path, '--kimg', '0.16', '--no-progress', '--eval-samples', '0'])
    assert result.exit_code == 0, result.output
    assert os.path.exists(tmp_path / 'network-snapshot-000020.pkl')
    assert load_snapshot(str(tmp_path / 'network-snapshot-000020.pkl'))['rs_imle']['step'] == 20
    os.remove(tmp_path / 'network-snapshot-000020.pkl')     # the id-less snapshot still counts as this run's
    result = invoke(['--resume', tmp_path, '--no-progress', '--eval-samples', '0'])
    assert result.exit_code == 0 and 'resuming network-snapshot-000010.pkl' in result.output, result.output

# ---------------------------------------------------------------------- divergence
def test_a_diverging_run_stops_and_keeps_its_last_good_snapshot(tmp_path):
    result = invoke(['--outdir', tmp_path, *TINY_CLI, '--perceptual', 'fallback', '--lr', '1e9', '--snap-kimg', '0.008'])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert re.match(r'Error: the loss became nan at step \d+ .*lower --lr', last), last
    run_dir = only_run_dir(tmp_path)
    def strict(token):
        raise ValueError(f'not JSON: {token}')
    records = [json.loads(line, parse_constant=strict) for line in open(os.path.join(run_dir, 'metrics.jsonl'))]
    assert records[-1]['kind'] == 'diverged'
    for name in os.listdir(run_dir):
        if name.endswith('.pkl'):
            G = load_snapshot(os.path.join(run_dir, name))['G_ema']
            assert all(torch.isfinite(p).all() for p in G.parameters())

# ---------------------------------------------------------------------- one-line errors, nothing left behind
def bad_crc_zip(path, images):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
        for i, x in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(np.asarray(x).transpose(1, 2, 0)).save(buf, format='PNG')
            zf.writestr(f'{i:03d}.png', buf.getvalue())
    raw = bytearray(open(path, 'rb').read())
    at = raw.index(b'IDAT') + 8                 # inside the first member's image data
    raw[at] ^= 0xFF
    open(path, 'wb').write(bytes(raw))
    return str(path)

def error_cases(tmp_path, monkeypatch):
    (tmp_path / 'a-file').write_text('x')
    readonly = tmp_path / 'readonly'
    readonly.mkdir()
    readonly.chmod(0o555)
    if os.geteuid() == 0:                       # root writes anywhere; answer as the kernel does for others
        real_access = os.access
        monkeypatch.setattr(os, 'access', lambda p, m, **kw: False if str(p) == str(readonly) else real_access(p, m, **kw))
    monkeypatch.setitem(sys.modules, 'faiss', None)             # faiss not installed
    zipped = bad_crc_zip(tmp_path / 'bad.zip', tiny_images())
    return {
        'cuda': (['--device', 'cuda'], '--device cuda: CUDA is not available here'),
        'nonsense': (['--device', 'nonsense'], "--device 'nonsense': not a torch device"),
        'file': (['--outdir', tmp_path / 'a-file'], 'is a file, not a folder'),
        'readonly': (['--outdir', readonly / 'runs'], 'is not writable'),
        'faiss': (['--knn-backend', 'faiss'], 'faiss is not installed; pip install faiss-cpu'),
        'crc': (['--data', zipped], 'Bad CRC-32'),
        'metric': (['--metrics', 'fid50k_fulll'], '--metrics: unknown fid50k_fulll'),
    }

@pytest.mark.parametrize('case', ['cuda', 'nonsense', 'file', 'readonly', 'faiss', 'crc', 'metric'])
def test_cli_errors_are_one_line_and_leave_nothing_behind(tmp_path, monkeypatch, case):
    if case == 'cuda' and torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    args, message = error_cases(tmp_path, monkeypatch)[case]
    outdir = tmp_path / 'out'
    result = invoke(['--outdir', outdir, *TINY_CLI, *args] if '--outdir' not in args else [*TINY_CLI, *args])
    assert result.exit_code == 2, result.output
    errors = [l for l in result.output.splitlines() if l.startswith('Error:')]
    assert len(errors) == 1 and message in errors[0], result.output
    assert 'Traceback' not in result.output and not outdir.exists() and not (tmp_path / 'readonly' / 'runs').exists()

def test_skip_bad_skips_a_zip_member_with_a_bad_crc(tmp_path):
    zipped = bad_crc_zip(tmp_path / 'bad.zip', tiny_images())
    result = invoke(['--outdir', tmp_path / 'out', '--data', zipped, '--skip-bad', *TINY_CLI, '--kimg', '0.008',
                     '--perceptual', 'fallback'])
    assert result.exit_code == 0, result.output
    assert 'skipped 1 unreadable image(s)' in result.output and '23 images' in result.output

def test_a_metric_that_cannot_be_computed_is_not_reported_as_a_failed_write(tmp_path, monkeypatch):
    """--metrics fid1k_full without the Inception weights: one line naming the metric and the missing file, the
    snapshot kept, and not 'cannot write ...; free space' (the detector's OSError is no disk problem)."""
    from rtm_plugin.metrics import detectors
    missing = tmp_path / 'nowhere' / 'inception-2015-12-05.pt'
    monkeypatch.setitem(detectors.DETECTOR_URLS, 'inception', missing.as_uri())     # offline, in every environment
    result = invoke(['--outdir', tmp_path / 'runs', *TINY_CLI, '--perceptual', 'fallback', '--metrics', 'fid1k_full'])
    assert result.exit_code == 1
    (message,) = [line for line in result.output.splitlines() if line.startswith('Error: ')]
    assert message.startswith('Error: --metrics fid1k_full: ') and str(missing) in message
    assert 'free space' not in message and '--resume' in message
    assert os.path.isfile(os.path.join(only_run_dir(tmp_path / 'runs'), 'network-snapshot-000000.pkl'))

# ---------------------------------------------------------------------- the run folder, as StyleGAN2-ADA's
def test_run_folder_has_stylegan_files_and_metrics(tmp_path):
    result = invoke(['--outdir', tmp_path, *TINY_CLI, '--perceptual', 'fallback', '--metrics', 'modes1k',
                     '--eval-samples', '200'])
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert options['config']['batch'] == 8 and options['threads'] == 1 and options['metrics'] == ['modes1k']
    assert re.fullmatch(r'[0-9a-f]{12}', options['run_id']) and options['loss'].startswith('multiscale')
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert 'run folder:' in log and re.search(r'^tick 0 +kimg 0\.1', log, re.M) and 'rtm: modes ' in log
    stats = [json.loads(l) for l in open(os.path.join(run_dir, 'stats.jsonl'))]
    assert stats and all({'Progress/tick', 'Progress/kimg', 'Timing/sec_per_tick', 'Loss/G/loss', 'timestamp'}
                         <= set(s) for s in stats)
    assert set(stats[-1]['Loss/G/loss']) == {'num', 'mean', 'std'} and stats[-1]['Loss/G/loss']['num'] == 80
    metric = [json.loads(l) for l in open(os.path.join(run_dir, 'metric-modes1k.jsonl'))]
    assert metric[-1]['metric'] == 'modes1k' and metric[-1]['snapshot_pkl'] == 'network-snapshot-000000.pkl'
    assert 0 <= metric[-1]['results']['modes1k_modes'] <= 1000 and 'total_time_str' in metric[-1]
    if importlib.util.find_spec('tensorboard'):
        assert any(n.startswith('events.out.tfevents.') for n in os.listdir(run_dir))
    for name in ('reals.png', 'fakes_init.png', 'fakes000000.png'):
        grid = np.asarray(Image.open(os.path.join(run_dir, name)))
        assert grid.shape[1] >= 512, name
        block = grid[:4, :4].reshape(16, -1)    # 16-px tiles x 4: each source pixel is a 4x4 block
        assert (block == block[0]).all()
