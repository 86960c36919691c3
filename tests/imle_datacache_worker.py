"""Run by tests/test_imle_datacache.py under torchrun: every rank opens the shared decoded dataset and reports."""

import hashlib
import json
import os
import sys

import numpy as np

from rtm_plugin.imle import distributed as D
from rtm_plugin.imle.datacache import load_images_shared

if __name__ == '__main__':
    data, out = sys.argv[1], sys.argv[2]
    rank, world = D.init_from_env('cpu')
    found = load_images_shared(data, 16, log=lambda m: None)
    images = found.images
    report = dict(rank=rank, world=world, created=found.created, file=found.file, memmap=isinstance(images, np.memmap),
                  writeable=bool(images.flags.writeable), mode=images.mode, shape=list(images.shape),
                  sha1=hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest(),
                  inode=os.stat(found.file).st_ino)
    with open(os.path.join(out, f'rank{rank}.json'), 'w') as f:
        json.dump(report, f)
    D.long_barrier()
