"""rtm-eval: stylegan2-ada's metrics (fid50k_full, kid50k_full, pr50k3_full, is50k, ...) between image sets on disk."""

import contextlib
import sys
import warnings

import click

from rtm_plugin import __version__

def _split_metrics(value):
    names = [m.strip() for m in value.split(',') if m.strip()]
    if not names:
        raise click.UsageError('--metrics: give at least one metric name')
    return names

def _detector_files(values, names):
    """--detector values -> (digits?, {kind: path or URL}) for the metrics `names`."""
    from rtm_plugin.metrics.detectors import detector_kind
    from rtm_plugin.metrics.metric_main import parse_metric
    digits, files = False, {}
    kinds = {parse_metric(n).detector for n in names} - {'digits'}
    for value in values:
        if value == 'digits':
            digits = True
            continue
        if value in ('inception', 'vgg16'):
            continue            # the metrics' own detectors anyway
        kind = detector_kind(value)
        if kind == 'generic':
            if len(kinds) != 1:
                raise click.UsageError(f'--detector {value}: cannot tell whether it is the Inception or the VGG16 file '
                                       'those metrics need; name it inception-2015-12-05.pt or vgg16.pt')
            kind = next(iter(kinds))
        files[kind] = value
    return digits, files

def _os_error(e, fix):
    where = f'{e.filename}: ' if e.filename else ''
    return f'{where}{e.strerror or e}; {fix}'

@click.command(context_settings=dict(help_option_names=['-h', '--help'], show_default=True))
@click.version_option(__version__)
@click.option('--real', 'real_path', required=True, type=click.Path(exists=True),
              help='Real images: folder, zip or .npy; or reference statistics .npz (mu, sigma)')
@click.option('--fake', 'fake_path', required=True, type=click.Path(exists=True),
              help='Generated images: folder, zip or .npy')
@click.option('--metrics', 'metrics', default='fid50k_full',
              help='Comma-separated metric names: fid50k_full, kid50k_full, pr50k3_full, is50k, dc50k5_full, '
                   'modes10k, any count (fid10k_full, pr1k3), _digits for the digit classifier')
@click.option('--detector', 'detectors', multiple=True,
              help="'digits' (every metric in the digit classifier's space, named *_digits), or the local path / URL "
                   'of inception-2015-12-05.pt or vgg16.pt (repeatable) [the metrics\' own, downloaded once]')
@click.option('--resize', is_flag=True, help="Resize the reals to the generated images' resolution (Lanczos) "
                                             'instead of refusing a mismatch')
@click.option('--batch', type=click.IntRange(min=1), default=256, help='Detector batch size')
@click.option('--device', default='cpu', help='Torch device for the detector')
@click.option('--cache-dir', type=click.Path(file_okay=False), help='Cache root for detectors and reference '
                                                                    'statistics [$RTM_CACHE_DIR or ~/.cache/rtm_plugin]')
@click.option('--out', type=click.Path(dir_okay=False), help='Also write the result lines (JSONL) to this file')
@click.option('--no-progress', is_flag=True, help='No progress bars')
def main(real_path, fake_path, metrics, detectors, resize, batch, device, cache_dir, out, no_progress):
    """Evaluate generated images against reals with stylegan2-ada's metric names and protocols. Each metric prints
    one JSON line as stylegan2-ada's calc_metrics.py does; warnings (too few samples) go to stderr.

    \b
    rtm-eval --real data.zip --fake samples/ --metrics fid50k_full,pr50k3_full
    rtm-eval --real stats.npz --fake samples/ --metrics fid10k_full
    rtm-eval --real digits.npy --fake samples/ --metrics fid10k_full,modes10k --detector digits
    """
    import torch
    from rtm_plugin.files import atomic_write
    from rtm_plugin.metrics.detectors import DetectorDownloadError
    from rtm_plugin.metrics.metric_main import calc_metric, parse_metric, report_metric, with_detector
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise click.UsageError(f'--device {device}: {e}')
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise click.UsageError(f'--device {device}: no CUDA device is available here; use --device cpu')
    try:        # a device torch knows but this machine lacks (mps, xpu, cuda:7) failed later, blaming the detector
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, NotImplementedError) as e:
        raise click.UsageError(f'--device {device}: not usable here ({type(e).__name__}: {str(e).splitlines()[0]}); '
                               'use --device cpu')
    names = _split_metrics(metrics)
    try:
        digits, files = _detector_files(detectors, names)
        if digits:
            names = [with_detector(n, 'digits') for n in names]
        specs = [parse_metric(n) for n in names]
    except ValueError as e:
        raise click.UsageError(str(e))
    lines = []
    for spec in specs:
        # stdout carries the result lines only: download notices go to stderr
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter('always')
            try:
                result = calc_metric(spec.name, fakes=fake_path, real=real_path, device=device,
                                     batch_size=batch, cache_dir=cache_dir, progress=not no_progress,
                                     detector=files.get(spec.detector), resize=resize)
            except (ValueError, TypeError, FileNotFoundError, DetectorDownloadError) as e:
                raise click.UsageError(str(e))
            except OSError as e:    # e.g. the statistics cache cannot be written: a file on the way, no space
                raise click.ClickException(_os_error(e, 'fix that path (--cache-dir must be a writable folder) '
                                                        'and run again'))
        for w in caught:
            if issubclass(w.category, UserWarning):
                click.echo(f'warning: {w.message}', err=True)
        lines.append(report_metric(result, echo=False))
        click.echo(lines[-1])
    if out:
        try:
            atomic_write(out, ''.join(line + '\n' for line in lines))
        except OSError as e:
            raise click.ClickException(_os_error(e, 'give --out a file in a writable folder (the results are on '
                                                    'stdout above)'))
