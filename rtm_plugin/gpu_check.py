"""python -m rtm_plugin.gpu_check --out DIR: everything about the fused CUDA op and the RTM that needs a GPU,
checked in one command (under 8 minutes on one H100/H200), with a Markdown and a JSON report in DIR.

Steps (each records ok / failed / skipped, its time and its figures; a failed step does not stop the others):
  environment  torch, CUDA, the GPU, its FP32 peak (SMs x FP32 lanes x 2 x max SM clock)
  build        builds the fused op (CUDA with a GPU, else CPU) in this process
  tests        pytest: test_fused_cuda.py with a GPU; without one, test_fused_kernel_emulation.py and
               test_fused_nvcc.py (the kernel body on CPU threads, and its nvcc resource report)
  sanitizer    compute-sanitizer racecheck, synccheck and memcheck on torch_utils_ext/rtm_fused_harness.cu
               (four small shapes through every path of the kernel, clusters on sm_90), when the tool is present
  bench        RTM mapper forward, fused vs reference vs torch.compile(reference), batch 1, 16, 256, 4096,
               4 x 128 and 8 x 64 at (16,1); the op's GFLOP/s as % of FP32 peak
  latency      the paper's App. H protocol (20 warm-ups, median of 200, per image) for the whole few-shot
               (256 px, batch 16) and CIFAR (32 px, batch 64) generators of rtm_plugin.imle, RTM vs MLP-8
  imle         200 rtm-imle steps (the embedded default run, batch 64: 12.8 kimg) on the GPU
  sg2ada       with RTM_SG2ADA_DIR set: a patched copy of the checkout, `train.py --cfg=stylegan2 --map=rtm`
               for 1 kimg on a small random dataset

Without a GPU it says so, runs the CPU parts (build, tests, a CPU bench) and exits 0. --quick keeps only the
environment and the CPU build (what the test suite runs); --skip drops named steps.
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import replace

import click
import torch

from rtm_plugin.files import atomic_write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ('environment', 'build', 'tests', 'sanitizer', 'bench', 'latency', 'imle', 'sg2ada')
GPU_ONLY = ('sanitizer', 'latency', 'imle', 'sg2ada')
BENCH_CONFIGS = [(4, 128), (8, 64)]             # tokens x token_dim, at (H, L) = (16, 1)
TARGETS = dict(batch1_us=50.0, peak_percent=40.0, generator_overhead=0.05)

#----------------------------------------------------------------------------
# Device facts.

def fp32_lanes_per_sm(major, minor):
    """FP32 FMA lanes per SM: 64 on GP100 (sm_60), all of Volta and Turing (sm_7x: V100, Xavier, T4) and GA100
    (sm_80); 128 on consumer Pascal, the other Amperes, Ada, Hopper and Blackwell."""
    return 64 if major == 7 or (major, minor) in ((6, 0), (8, 0)) else 128

def max_sm_clock_mhz(index):
    """The GPU's maximum SM clock from nvidia-smi, or None."""
    smi = shutil.which('nvidia-smi')
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, '--query-gpu=clocks.max.sm', '--format=csv,noheader,nounits', f'-i={index}'],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return float(out.splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None

def fp32_peak_gflops(device):
    """Peak FP32 GFLOP/s of a CUDA device (FMA = 2 flops), or None when the clock is unknown."""
    props = torch.cuda.get_device_properties(device)
    mhz = max_sm_clock_mhz(torch.device(device).index or 0)
    if mhz is None and getattr(props, 'clock_rate', None):
        mhz = props.clock_rate / 1000
    if mhz is None:
        return None
    return 2 * props.multi_processor_count * fp32_lanes_per_sm(props.major, props.minor) * mhz / 1000

def cuda_tool(name):
    """A CUDA toolkit program (compute-sanitizer, nvcc) on PATH or under the toolkit root, or None."""
    from torch_utils_ext import custom_ops
    found = shutil.which(name)
    if found:
        return found
    root = custom_ops.find_cuda_home()
    for sub in ('bin', name):
        path = os.path.join(root or '', sub, name)
        if root and os.path.isfile(path):
            return path
    return None

#----------------------------------------------------------------------------
# Steps. Each takes the context dict and returns (status, summary, details).

def step_environment(ctx):
    env = dict(python=platform.python_version(), torch=torch.__version__, torch_cuda=torch.version.cuda,
               gpu=ctx['gpu'], cpu_threads=torch.get_num_threads())
    if ctx['gpu']:
        props = torch.cuda.get_device_properties(ctx['device'])
        env.update(name=props.name, capability=f'{props.major}.{props.minor}', sms=props.multi_processor_count,
                   memory_gib=round(props.total_memory / 2 ** 30, 1),
                   smem_optin_kib=getattr(props, 'shared_memory_per_block_optin', 0) // 1024,
                   fp32_peak_gflops=ctx['peak'])
        return 'ok', f'{props.name} (sm_{props.major}{props.minor}, {props.multi_processor_count} SMs), FP32 peak ' \
                     f'{ctx["peak"] and round(ctx["peak"])} GFLOP/s', env
    return 'ok', 'no CUDA GPU: only the CPU parts run', env

def step_build(ctx):
    from torch_utils_ext import rtm_fused
    kind = 'cuda' if ctx['gpu'] else 'cpu'
    t0 = time.time()
    plugin = rtm_fused.build(kind)
    return 'ok', f'{kind} plugin built/loaded in {time.time() - t0:.0f} s', dict(kind=kind, module=plugin.__name__)

def run_logged(cmd, ctx, name, timeout, **kwargs):
    """Runs cmd, writes its output to OUT/logs/NAME.log; returns (returncode or 'timeout', output)."""
    os.makedirs(os.path.join(ctx['out'], 'logs'), exist_ok=True)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as e:
        code, output = 'timeout', f'{e.stdout or ""}{e.stderr or ""}\n[timed out after {timeout} s]'
        output = output if isinstance(output, str) else output.decode(errors='replace')
    with open(os.path.join(ctx['out'], 'logs', f'{name}.log'), 'w') as f:
        f.write(' '.join(map(str, cmd)) + '\n\n' + output)
    return code, output

def step_tests(ctx):
    # With a GPU, the CUDA tests; the emulation and nvcc tests need none and run in CI (here: without a GPU).
    names = ['test_fused_cuda.py'] if ctx['gpu'] else ['test_fused_kernel_emulation.py', 'test_fused_nvcc.py']
    files = [os.path.join(REPO, 'tests', n) for n in names if os.path.isfile(os.path.join(REPO, 'tests', n))]
    if not files:
        return 'skipped', 'the tests/ folder is not here (run from a checkout of the repository)', {}
    env = dict(os.environ, PYTHONPATH=REPO)
    code, output = run_logged([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *files], ctx, 'tests',
                              ctx['timeout'](300), env=env, cwd=REPO)
    tail = [line for line in output.strip().splitlines() if re.search(r'passed|failed|error|skipped', line)]
    summary = tail[-1] if tail else f'pytest exit {code}'
    return ('ok' if code == 0 else 'failed'), summary, dict(files=names, exit=code)

def step_sanitizer(ctx):
    sanitizer, nvcc = cuda_tool('compute-sanitizer'), cuda_tool('nvcc')
    if sanitizer is None or nvcc is None:
        return 'skipped', 'compute-sanitizer or nvcc not found', {}
    props = torch.cuda.get_device_properties(ctx['device'])
    harness = os.path.join(ctx['work'], 'rtm_fused_harness')
    src = os.path.join(REPO, 'torch_utils_ext')
    code, output = run_logged([nvcc, '-O3', f'-arch=sm_{props.major}{props.minor}', '-lineinfo', '-I', src,
                               os.path.join(src, 'rtm_fused_harness.cu'), '-o', harness], ctx, 'harness_build',
                              ctx['timeout'](180))
    if code != 0:
        return 'failed', 'the harness did not build (logs/harness_build.log)', {}
    results = {}
    for tool in ('racecheck', 'synccheck', 'memcheck'):
        extra = ['--racecheck-report', 'all'] if tool == 'racecheck' else []
        code, output = run_logged([sanitizer, '--tool', tool, *extra, '--error-exitcode', '1', harness], ctx,
                                  f'sanitizer_{tool}', ctx['timeout'](120))
        errors = re.findall(r'ERROR SUMMARY: (\d+) error', output)
        results[tool] = dict(exit=code, errors=int(errors[-1]) if errors else None,
                             cases=[l for l in output.splitlines() if l.startswith('N=')])
    ok = all(r['exit'] == 0 and r['errors'] == 0 for r in results.values())
    return ('ok' if ok else 'failed'), ', '.join(f'{t}: {r["errors"]} errors' for t, r in results.items()), results

def block_flops(S, D, Ht, Hc):
    """Flops of one block call on one sample: token SwiGLU (gate, up, down) over S, channel SwiGLU over D."""
    return 6 * S * D * (Ht + Hc)

def step_bench(ctx):
    from rtm_plugin.mapping import RTMMappingNetwork
    from rtm_plugin.timing import interleaved_medians
    device = ctx['device']
    gpu = ctx['gpu']
    batches = [1, 16, 256, 4096] if gpu else [1, 16]
    rows = []
    torch.manual_seed(0)
    for tokens, dim in BENCH_CONFIGS:
        mapper = RTMMappingNetwork(512, 0, 512, 14, tokens=tokens, token_dim=dim, H=16, L=1).to(device).eval()
        trunk = mapper.trunk
        compiled = None
        if gpu:
            compiled = torch.compile(lambda z, m=mapper: m(z, use_fused=False), dynamic=True)
        for batch in batches:
            z = torch.randn(batch, 512, device=device)
            carries = [torch.randn(batch, tokens, dim, device=device) for _ in range(3)]
            with torch.no_grad():
                op = trunk.block_fn(carries[0], use_fused=True)
                fns = {'reference': lambda: mapper(z, use_fused=False), 'fused': lambda: mapper(z, use_fused=True),
                       'op': lambda: op.recursion(*carries, 16, 1)}
                if compiled is not None:
                    try:
                        compiled(z)
                        fns['compiled'] = lambda: compiled(z)
                    except Exception as e:  # a compile failure is a finding, not the end of the bench
                        ctx.setdefault('notes', []).append(f'torch.compile failed: {type(e).__name__}: {e}')
                        compiled = None
                t = interleaved_medians(fns, rounds=3 if gpu else 1, warmup=3, repeats=20 if gpu else 3,
                                        device=device)
            S, D, Ht, Hc = op.dims
            gflops = block_flops(S, D, Ht, Hc) * 16 * 2 * batch / t['op'] / 1e9
            row = dict(config=f'{tokens}x{dim}', batch=batch, reference_us=t['reference'] * 1e6,
                       fused_us=t['fused'] * 1e6, compiled_us=t['compiled'] * 1e6 if 'compiled' in t else None,
                       op_us=t['op'] * 1e6, op_gflops=gflops,
                       op_peak_percent=100 * gflops / ctx['peak'] if ctx['peak'] else None)
            rows.append(row)
    targets = {}
    if gpu:
        b1 = next(r for r in rows if r['config'] == '4x128' and r['batch'] == 1)
        big = [r for r in rows if r['batch'] == 4096 and r['op_peak_percent'] is not None]
        targets['4x128 (16,1) forward at batch 1 <= 50 us'] = b1['fused_us'] <= TARGETS['batch1_us']
        if big:
            targets['>= 40% of FP32 peak at batch 4096'] = all(r['op_peak_percent'] >= TARGETS['peak_percent']
                                                                 for r in big)
    b1 = rows[0]
    summary = (f'4x128 batch 1: fused {b1["fused_us"]:.0f} us, reference {b1["reference_us"]:.0f} us' +
               ('; targets: ' + ', '.join(f'{k}: {"met" if v else "MISSED"}' for k, v in targets.items())
                if targets else ' (CPU)'))
    return 'ok', summary, dict(rows=rows, targets=targets)

def generator_configs():
    """The App. H generators: few-shot (the official RS-IMLE few-shot config, 256 px) and CIFAR (32 px, the
    ConvNeXt-style decoder, RTM (16,1) 4 x 128 at z = w = 512), each with RTM and with the 8-layer MLP."""
    from rtm_plugin.imle.config import FEWSHOT
    cifar = replace(FEWSHOT, decoder='convnext', resolution=32, z_dim=512, w_dim=512, rtm_h=16, rtm_l=1,
                    rtm_tokens=4, rtm_dim=128)
    return [('few-shot 256px', FEWSHOT, 16), ('CIFAR 32px', cifar, 64)]

def step_latency(ctx):
    from rtm_plugin.imle.generator import build_generator
    from rtm_plugin.timing import interleaved_medians
    device = ctx['device']
    rows = []
    for name, cfg, batch in generator_configs():
        fns, gens = {}, {}
        for label, c in (('RTM', cfg), ('MLP-8', replace(cfg, map='mlp', mlp_layers=8))):
            torch.manual_seed(0)
            G = build_generator(c).to(device).eval()
            z = torch.randn(batch, G.z_dim, device=device)
            gens[label] = G
            fns[(label, 'mapper')] = lambda G=G, z=z: G.mapping(z, None)
            fns[(label, 'generator')] = lambda G=G, z=z: G(z)
        with torch.no_grad():
            t = interleaved_medians(fns, rounds=1, warmup=20, repeats=200, device=device)
        per = {k: v / batch * 1e6 for k, v in t.items()}
        overhead = per[('RTM', 'generator')] / per[('MLP-8', 'generator')] - 1
        rows.append(dict(generator=name, batch=batch, rtm_mapper_us=per[('RTM', 'mapper')],
                         mlp_mapper_us=per[('MLP-8', 'mapper')], rtm_generator_us=per[('RTM', 'generator')],
                         mlp_generator_us=per[('MLP-8', 'generator')], rtm_overhead=overhead,
                         rtm_mapper_share=per[('RTM', 'mapper')] / per[('RTM', 'generator')]))
        del gens
    met = all(r['rtm_overhead'] <= TARGETS['generator_overhead'] for r in rows)
    summary = ', '.join(f'{r["generator"]}: RTM adds {100 * r["rtm_overhead"]:+.1f}%' for r in rows)
    return 'ok', summary + f' (target <= 5%: {"met" if met else "MISSED"})', dict(rows=rows, target_met=met)

def step_imle(ctx):
    outdir = os.path.join(ctx['out'], 'imle-runs')
    cmd = [sys.executable, '-m', 'rtm_plugin.imle', '--outdir', outdir, '--device', str(ctx['device']),
           '--kimg', '12.8', '--eval-samples', '0', '--no-progress']
    # A report folder used before holds earlier runs: read only the run folder this command made.
    earlier = set(os.listdir(outdir)) if os.path.isdir(outdir) else set()
    t0 = time.time()
    code, output = run_logged(cmd, ctx, 'imle', ctx['timeout'](300), env=dict(os.environ, PYTHONPATH=REPO))
    made = sorted(set(os.listdir(outdir)) - earlier) if os.path.isdir(outdir) else []
    metrics = [p for p in (os.path.join(outdir, d, 'metrics.jsonl') for d in made) if os.path.isfile(p)]
    lines = []
    if metrics:
        with open(metrics[-1]) as f:
            lines = f.read().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    ok = code == 0 and bool(lines)
    return ('ok' if ok else 'failed'), (f'200 steps (12.8 kimg) in {time.time() - t0:.0f} s, last tick: '
                                        f'{ {k: last[k] for k in list(last)[:4]} }' if ok else
                                        f'exit {code} (logs/imle.log)'), dict(exit=code, last_tick=last)

def step_sg2ada(ctx):
    upstream = os.environ.get('RTM_SG2ADA_DIR')
    if not upstream:
        return 'skipped', 'RTM_SG2ADA_DIR is not set', {}
    import numpy as np
    import PIL.Image
    from rtm_plugin.patching import engine
    from rtm_plugin.patching.targets import load_target
    base = os.path.join(ctx['work'], 'sg2ada')
    checkout, data = os.path.join(base, 'checkout'), os.path.join(base, 'data')
    shutil.copytree(upstream, checkout, ignore=shutil.ignore_patterns('.git', '__pycache__'))
    engine.apply(checkout, load_target('stylegan2-ada-pytorch'))
    os.makedirs(data)
    rng = np.random.RandomState(0)
    for i in range(64):
        PIL.Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(data, f'{i}.png'))
    cmd = [sys.executable, 'train.py', f'--outdir={os.path.join(ctx["out"], "sg2ada-runs")}', f'--data={data}',
           '--cfg=stylegan2', '--map=rtm', '--kimg=1', '--snap=1', '--metrics=none', '--gpus=1', '--batch=16']
    code, output = run_logged(cmd, ctx, 'sg2ada', ctx['timeout'](300), cwd=checkout,
                              env=dict(os.environ, PYTHONPATH=REPO))
    ok = code == 0 and 'Exiting...' in output
    return ('ok' if ok else 'failed'), ('1 kimg trained, snapshot written' if ok else
                                        f'exit {code} (logs/sg2ada.log)'), dict(exit=code)

STEP_FUNCTIONS = dict(environment=step_environment, build=step_build, tests=step_tests, sanitizer=step_sanitizer,
                      bench=step_bench, latency=step_latency, imle=step_imle, sg2ada=step_sg2ada)

#----------------------------------------------------------------------------
# Reports.

def _fmt(v):
    if v is None:
        return '-'
    if isinstance(v, float):
        return f'{v:.3g}' if abs(v) < 1000 else f'{v:.0f}'
    return str(v)

def markdown(report):
    lines = ['# GPU check', '', report['verdict'], '',
             '| step | status | seconds | summary |', '|---|---|---|---|']
    for r in report['steps']:
        lines.append(f'| {r["step"]} | {r["status"]} | {r["seconds"]:.0f} | {r["summary"]} |')
    for r in report['steps']:
        rows = r['details'].get('rows') if isinstance(r['details'], dict) else None
        if rows:
            cols = list(rows[0])
            lines += ['', f'## {r["step"]}', '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
            lines += ['| ' + ' | '.join(_fmt(row.get(c)) for c in cols) + ' |' for row in rows]
    if report.get('notes'):
        lines += ['', '## Notes', ''] + [f'- {n}' for n in report['notes']]
    lines += ['', 'Times in microseconds; latency rows per image (App. H: 20 warm-ups, median of 200). '
              'Logs of the subprocesses are in logs/.', '']
    return '\n'.join(lines)

@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--out', required=True, type=click.Path(file_okay=False), help='Report folder (created)')
@click.option('--skip', default='', help=f'Comma-separated steps to skip, of: {", ".join(STEPS)}')
@click.option('--quick', is_flag=True, help='Only the environment and the build (what the test suite runs)')
@click.option('--budget', type=click.IntRange(min=60), default=450, show_default=True,
              help='Seconds; steps that would start after this are skipped')
def main(out, skip, quick, budget):
    """Builds, tests, sanitises and benchmarks the fused CUDA op and the RTM on this machine's GPU;
    writes OUT/gpu_check.md and OUT/gpu_check.json. Without a GPU: the CPU parts, exit 0."""
    skipped = {s.strip() for s in skip.split(',') if s.strip()}
    unknown = skipped - set(STEPS)
    if unknown:
        raise click.UsageError(f'unknown step(s) in --skip: {", ".join(sorted(unknown))}; steps: {", ".join(STEPS)}')
    os.makedirs(out, exist_ok=True)
    start = time.time()
    gpu = torch.cuda.is_available() and bool(torch.version.cuda)
    device = torch.device('cuda', torch.cuda.current_device()) if gpu else torch.device('cpu')
    ctx = dict(out=os.path.abspath(out), gpu=gpu, device=device, peak=fp32_peak_gflops(device) if gpu else None,
               work=tempfile.mkdtemp(prefix='gpu_check_'),
               timeout=lambda want: max(30, min(want, int(budget + 60 - (time.time() - start)))))
    click.echo('GPU: ' + (torch.cuda.get_device_name(device) if gpu else
                          'none. This machine has no CUDA GPU (or torch is a CPU build): running the CPU parts only.'))
    results = []
    try:
        for step in STEPS:
            reason = ('--skip' if step in skipped else
                      'needs a GPU' if step in GPU_ONLY and not gpu else
                      '--quick' if quick and step not in ('environment', 'build') else
                      f'time budget ({budget} s) spent' if time.time() - start > budget else None)
            t0 = time.time()
            if reason:
                status, summary, details = 'skipped', reason, {}
            else:
                click.echo(f'[{time.time() - start:5.0f} s] {step}...')
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter('always')
                        status, summary, details = STEP_FUNCTIONS[step](ctx)
                    for w in caught:
                        ctx.setdefault('notes', []).append(f'{step}: warning: {str(w.message).splitlines()[0]}')
                except Exception as e:  # a failed step is reported, the others still run
                    status, summary, details = 'failed', f'{type(e).__name__}: {e}'.splitlines()[0], \
                                               dict(traceback=traceback.format_exc())
            results.append(dict(step=step, status=status, seconds=time.time() - t0, summary=summary, details=details))
            click.echo(f'        {step}: {status}: {summary}')
    finally:        # the harness binary and the SG2-ADA copy, also after a Ctrl-C
        shutil.rmtree(ctx['work'], ignore_errors=True)
    failed = [r['step'] for r in results if r['status'] == 'failed']
    verdict = ((f'GPU: {torch.cuda.get_device_name(device)}.' if gpu else
                'No CUDA GPU on this machine: the GPU steps were skipped and only the CPU parts ran.') +
               (f' Failed: {", ".join(failed)}.' if failed else ' No step failed.') +
               f' Total {time.time() - start:.0f} s.')
    report = dict(verdict=verdict, gpu=gpu, seconds=time.time() - start, targets=TARGETS, steps=results,
                  notes=ctx.get('notes', []))
    atomic_write(os.path.join(out, 'gpu_check.json'), json.dumps(report, indent=2, default=str))
    atomic_write(os.path.join(out, 'gpu_check.md'), markdown(report))
    click.echo(verdict + f' Reports: {os.path.join(out, "gpu_check.md")}, {os.path.join(out, "gpu_check.json")}')
    sys.exit(1 if failed else 0)

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
