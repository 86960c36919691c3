"""--amp: mixed precision for the decoder and the loss (torch.autocast), with a GradScaler for fp16.

The mapper stays in fp32 under every setting (IMLEGenerator.forward leaves autocast for it): it is small, its
recursion applies one block H x L times, and RTM's RMSNorm keeps its statistics in fp32 anyway. bf16 has fp32's
exponent range and needs no loss scaling; fp16 does, hence the scaler (a no-op object for 'off' and 'bf16', so
one code path serves all three and 'off' computes exactly what it computed before --amp existed).
"""

import contextlib

import torch

AMP_CHOICES = ('off', 'bf16', 'fp16')
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}

def check_amp(amp, device=None):
    """`amp` if valid (and, given a CUDA device, supported by it)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f'amp must be one of {AMP_CHOICES}, got {amp!r}')
    device = None if device is None else torch.device(device)
    if amp == 'bf16' and device is not None and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise ValueError(f'--amp bf16: {torch.cuda.get_device_name(device)} has no bf16 support; use --amp fp16')
    return amp

def autocast(device, amp):
    """The autocast context for `amp` on `device` (a null context for 'off')."""
    if check_amp(amp) == 'off':
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[amp])

def grad_scaler(device, amp):
    """torch.amp.GradScaler, enabled for fp16 only."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=check_amp(amp) == 'fp16')
