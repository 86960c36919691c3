"""torchrun / DDP plumbing: the process group from torchrun's environment, and the few collectives we use."""

import os

import torch
import torch.distributed as dist

def init_from_env(device):
    """(rank, world_size); starts a process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1 and not dist.is_initialized():
        backend = 'nccl' if torch.device(device).type == 'cuda' else 'gloo'
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1

def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1

def all_gather_cat(x):
    """Concatenate x from every rank along dim 0 (shards may differ in length)."""
    if world_size() == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size())]
    sizes = [s.to(x.device) for s in sizes]
    dist.all_gather(sizes, torch.tensor([len(x)], dtype=torch.int64, device=x.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros([longest, *x.shape[1:]], dtype=x.dtype, device=x.device)
    padded[:len(x)] = x
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return torch.cat([o[:int(s.item())] for o, s in zip(out, sizes)])

def all_gather_stack(x):
    """[K, *x.shape]: x from every rank (same shape everywhere)."""
    if world_size() == 1:
        return x[None]
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.stack(out)

def all_reduce_sum(value, device='cpu'):
    if world_size() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item()

def any_rank(flag, device='cpu'):
    """True on every rank if flag is true on any (a stop request reaches all ranks at the same step)."""
    return all_reduce_sum(1.0 if flag else 0.0, device) > 0

def shard(n, rank, world):
    """The contiguous slice of range(n) that `rank` owns."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))
