"""How well the offline digit classifier reads Stacked Digits, and what the metrics say about real data.

python benchmarks/digit_classifier.py   (trains into a temporary cache, so it also times a cold start)
"""

import hashlib
import tempfile
import time

import torch

from rtm_plugin.datasets.stacked_digits import digit_split, load_digits_uint8, make_stacked_digits
from rtm_plugin.metrics import digits
from rtm_plugin.metrics.evaluate import evaluate_images
from rtm_plugin.metrics.modes import mode_stats

def weights_md5(classifier):
    return hashlib.md5(b''.join(v.numpy().tobytes() for v in classifier.net.state_dict().values())).hexdigest()

def main():
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        clf = digits.load_digit_classifier(cache_dir=cache)
        trained = time.perf_counter() - start
        digits._loaded.clear()
        start = time.perf_counter()
        digits.load_digit_classifier(cache_dir=cache)
        cached = time.perf_counter() - start
    print(f'cold start (train + cache): {trained:.1f} s; warm start (load cache): {cached:.2f} s; '
          f'weights md5 {weights_md5(clf)}')

    images, labels = load_digits_uint8()
    stack, classify = digit_split()
    print(f'\ntrained on {len(classify)} digits; held out: {len(stack)} digits of the stacking half\n')
    print('| resolution | held-out digit accuracy | Stacked-Digits mode accuracy (10,000 images) | modes | KL |')
    print('|---|---|---|---|---|')
    for res in (8, 16, 32, 64):
        acc = digits.digit_accuracy(clf.net, images[stack], labels[stack], resolution=res)
        x, modes = make_stacked_digits(10000, resolution=res, seed=100 + res)
        predicted = clf.classify_modes(x)
        stats = mode_stats(predicted)
        print(f'| {res} px | {acc:.2%} | {(predicted.numpy() == modes).mean():.2%} | {stats["modes"]} | '
              f'{stats["kl"]:.4f} |')

    print('\nreal vs real (two independent draws of 10,000 at 32 px), digits detector:')
    real, _ = make_stacked_digits(10000, resolution=32, seed=1)
    fake, _ = make_stacked_digits(10000, resolution=32, seed=2)
    start = time.perf_counter()
    results = evaluate_images(real, fake, detector=clf)
    print({k: round(v, 4) for k, v in results.items()}, f'({time.perf_counter() - start:.1f} s)')

if __name__ == '__main__':
    torch.set_grad_enabled(False)
    main()
