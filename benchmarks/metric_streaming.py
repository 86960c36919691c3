"""Reference statistics: cold (streamed from a folder of PNGs, then cached) against warm (the cached .npz), and the
peak memory of streaming against reading the whole set first, as rtm-eval did before.

python benchmarks/metric_streaming.py [--num 5000] [--resolution 64]

Memory is numpy's traced allocation peak (tracemalloc), the image arrays' share; torch's own allocator is not traced.
"""

import argparse
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

from PIL import Image

from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.metrics.digits import load_digit_classifier
from rtm_plugin.metrics.image_files import open_images, read_images
from rtm_plugin.metrics.metric_main import MetricWarning, calc_metric, parse_metric, reference_stats

def peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--num', type=int, default=5000)
    parser.add_argument('--resolution', type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter('ignore', MetricWarning)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real, _ = make_stacked_digits(args.num, args.resolution, seed=1)
        (tmp / 'real').mkdir()
        for i, img in enumerate(real):
            Image.fromarray(img.transpose(1, 2, 0)).save(tmp / 'real' / f'{i:06d}.png')
        fakes, _ = make_stacked_digits(1000, args.resolution, seed=2)
        clf = load_digit_classifier(cache_dir=tmp)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            result = calc_metric('fid1k_full_digits', fakes=fakes, real=tmp / 'real', cache_dir=tmp)
            times.append(time.perf_counter() - start)
        print(f'fid1k_full_digits, {args.num} reals of {args.resolution} px in a folder: cold (stream + cache) '
              f'{times[0]:.2f} s, warm (cached .npz) {times[1]:.2f} s, ratio {times[0] / times[1]:.1f}x; '
              f'FID {result["results"]["fid1k_full_digits"]:.4f}')
        spec = parse_metric('fid1k_full_digits')
        streamed = peak_mib(lambda: reference_stats(tmp / 'real', spec, clf, (3, args.resolution, args.resolution),
                                                    cache_dir=False))
        whole = peak_mib(lambda: clf.features(read_images(tmp / 'real')))
        size = len(open_images(tmp / 'real')) * real[0].nbytes / 2 ** 20
        print(f'peak traced memory: streamed {streamed:.1f} MiB, whole set first {whole:.1f} MiB '
              f'(the set is {size:.1f} MiB as uint8), ratio {whole / streamed:.1f}x')

if __name__ == '__main__':
    main()
