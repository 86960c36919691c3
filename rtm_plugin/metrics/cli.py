"""rtm-eval: every metric between two image sets on disk, printed and optionally written as JSON."""

import json

import click

from rtm_plugin import __version__
from rtm_plugin.cache import atomic_write

@click.command(context_settings=dict(help_option_names=['-h', '--help'], show_default=True))
@click.version_option(__version__)
@click.option('--real', 'real_path', required=True, type=click.Path(exists=True), help='Real images: folder, zip or .npy')
@click.option('--fake', 'fake_path', required=True, type=click.Path(exists=True), help='Generated images: folder, zip or .npy')
@click.option('--detector', default='digits', help='digits, inception, vgg16, or a TorchScript file path / URL')
@click.option('--max-images', type=click.IntRange(min=1), help='Use at most this many images of each set')
@click.option('--batch', type=click.IntRange(min=1), default=256, help='Detector batch size')
@click.option('--device', default='cpu', help='Torch device for the detector')
@click.option('--out', type=click.Path(dir_okay=False), help='Also write the metrics to this JSON file')
def main(real_path, fake_path, detector, max_images, batch, device, out):
    """FID, precision/recall (k=3), density/coverage (k=5), IS where the detector has classes, and the modes
    covered and KL when the detector is the offline digit classifier (Stacked Digits)."""
    from rtm_plugin.metrics.detectors import DetectorDownloadError
    from rtm_plugin.metrics.evaluate import evaluate_images
    from rtm_plugin.metrics.image_files import read_images
    try:
        real = read_images(real_path, max_images)
        fake = read_images(fake_path, max_images)
        results = evaluate_images(real, fake, detector=detector, device=device, batch_size=batch)
    except (ValueError, TypeError, FileNotFoundError, DetectorDownloadError) as e:
        raise click.ClickException(str(e))
    results = {'real': real_path, 'fake': fake_path, 'detector': detector, 'num_real': len(real),
               'num_fake': len(fake), **results}
    text = json.dumps(results, indent=2)
    click.echo(text)
    if out:
        atomic_write(out, lambda f: f.write(text.encode() + b'\n'))
