"""torchrun / DDP plumbing: this process's device, the process group from torchrun's environment, and the few
collectives we use.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (processes on this node) in every process, on
every node (--nnodes with a rendezvous endpoint), so one rule places every rank: rank r of a node takes
cuda:$LOCAL_RANK. Nothing here launches processes; torchrun does.
"""

import datetime
import os

import torch
import torch.distributed as dist

DEVICE_CHOICES = ('auto', 'cpu', 'cuda')     # and 'cuda:K' (one process), or any other torch device string

def _env_int(env, name, default):
    value = env.get(name)
    if value is None or value == '':
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'{name}={value!r} in the environment is not an integer') from None

def select_device(requested='auto', env=None):
    """The torch.device this process trains on; for CUDA it is also made the current device (set_device).

    'auto': CUDA when available, else the CPU. 'cuda' (or 'auto' with CUDA): cuda:$LOCAL_RANK, so that the
    processes torchrun starts on a node take one GPU each. 'cuda:K' names one GPU; under torchrun it must be
    cuda:$LOCAL_RANK. More processes on a node (LOCAL_WORLD_SIZE) than it has GPUs is an error.
    """
    env = os.environ if env is None else env
    requested = str(requested)
    world = _env_int(env, 'WORLD_SIZE', 1)
    local_rank = _env_int(env, 'LOCAL_RANK', 0)
    local_world = _env_int(env, 'LOCAL_WORLD_SIZE', world)
    if requested == 'auto':
        requested = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f'--device {requested!r}: not a torch device (use auto, cpu, cuda or cuda:K)') from None
    if device.type != 'cuda':
        return device
    if not torch.cuda.is_available():
        raise ValueError(f'--device {requested}: CUDA is not available here (torch {torch.__version__}); '
                         f'use --device cpu or auto')
    count = torch.cuda.device_count()
    if local_world > count:
        raise ValueError(f'{local_world} processes on this node but only {count} GPU(s): '
                         f'start at most --nproc_per_node={count}')
    if device.index is None:
        device = torch.device('cuda', local_rank)
    elif world > 1 and device.index != local_rank:
        raise ValueError(f'--device {requested} under torchrun: each process takes cuda:$LOCAL_RANK '
                         f'(here cuda:{local_rank}); pass --device cuda or auto')
    if device.index >= count:
        raise ValueError(f'--device {device}: this node has {count} GPU(s) (cuda:0 to cuda:{count - 1})')
    torch.cuda.set_device(device)
    return device

def backend_for(device):
    """NCCL between GPUs, gloo between CPU processes."""
    return 'nccl' if torch.device(device).type == 'cuda' else 'gloo'

def init_from_env(device):
    """(rank, world_size); starts a process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1

def local_rank():
    return int(os.environ.get('LOCAL_RANK', '0'))

def long_barrier(hours=12):
    """A barrier that waits as long as a slow step on one rank may take (decoding a dataset): a gloo group
    with its own timeout, so the training collectives keep their default one."""
    if world_size() == 1:
        return
    group = dist.new_group(backend='gloo', timeout=datetime.timedelta(hours=hours))
    dist.barrier(group=group)
    dist.destroy_process_group(group)

def synchronize(device):
    """Wait for queued GPU work, so that a wall-clock time covers it."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)

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
