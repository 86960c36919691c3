"""Wall-clock timing the way the paper's Appendix H protocol does it: warm up, then the median of many runs."""

import statistics
import time

import torch

def median_seconds(fn, warmup=20, repeats=200, device=None):
    """Median wall time of fn() in seconds; synchronises CUDA around each call when device is CUDA."""
    cuda = device is not None and torch.device(device).type == 'cuda'
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

def interleaved_medians(fns, rounds=5, warmup=3, repeats=20, device=None):
    """Median seconds of each fn in {name: fn}, measured in alternating rounds so machine noise hits all alike."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(median_seconds(fn, warmup=warmup, repeats=repeats, device=device))
    return {name: statistics.median(v) for name, v in samples.items()}
