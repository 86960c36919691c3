"""Image sheets for the tools, composed of rtm_plugin.image_grid's tiles: text labels, padding, stacking, and the
GIF / MP4 writers (atomic)."""

import io
import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from rtm_plugin.files import atomic_write
from rtm_plugin.image_grid import BACKGROUND

TEXT_HEIGHT = 14

def pad_to(array, height=None, width=None):
    h, w, _ = array.shape
    out = np.full([max(h, height or 0), max(w, width or 0), 3], BACKGROUND, dtype=np.uint8)
    out[:h, :w] = array
    return out

def label(array, text, width=None):
    """The array with a line of text above it (PIL's default font)."""
    array = pad_to(array, width=width)
    band = Image.new('RGB', (array.shape[1], TEXT_HEIGHT), (BACKGROUND,) * 3)
    ImageDraw.Draw(band).text((2, 1), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(band), array])

def stack(arrays, axis, gap=8):
    """HWC arrays side by side (axis=1) or one above the other (axis=0), padded to one size across, with gaps."""
    across = max(a.shape[1 - axis] for a in arrays)
    parts = []
    for i, a in enumerate(arrays):
        parts.append(pad_to(a, **{('width' if axis == 0 else 'height'): across}))
        if i < len(arrays) - 1:
            parts.append(np.full([gap, across, 3] if axis == 0 else [across, gap, 3], BACKGROUND, dtype=np.uint8))
    return np.concatenate(parts, axis=axis)

def hstack(arrays, gap=8):
    return stack(arrays, 1, gap)

def vstack(arrays, gap=8):
    return stack(arrays, 0, gap)

def save_gif(path, frames, frame_ms=400, last_ms=1500):
    """An endlessly looping GIF of HWC frames (one size); the last frame stays on screen for last_ms."""
    images = [Image.fromarray(f) for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [last_ms]
    buf = io.BytesIO()
    images[0].save(buf, format='GIF', save_all=True, append_images=images[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    return atomic_write(path, buf.getvalue())

def save_mp4(path, frames, fps=2.5, last_repeat=4):
    """An H.264 MP4 through imageio-ffmpeg's bundled ffmpeg; None when imageio-ffmpeg is not installed.
    Frames are padded to multiples of 16 (yuv420p and macroblocks need even sizes)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    frames = list(frames) + [frames[-1]] * last_repeat
    h, w, _ = frames[0].shape
    frames = [pad_to(f, height=-(-h // 16) * 16, width=-(-w // 16) * 16) for f in frames]
    with tempfile.TemporaryDirectory() as tmp:            # ffmpeg writes a file; it is then moved in atomically
        video = os.path.join(tmp, 'video.mp4')
        writer = imageio_ffmpeg.write_frames(video, (frames[0].shape[1], frames[0].shape[0]), fps=fps,
                                             codec='libx264', quality=8, macro_block_size=16)
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()
        with open(video, 'rb') as f:
            return atomic_write(path, f.read())
