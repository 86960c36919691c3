"""The matching feature space of the official RS-IMLE code (search_type 'l2'): a fixed, seeded Gaussian
random projection of the flattened image in [-1, 1], rows of the matrix unit-norm, output L2-normalised.
Distances are then Euclidean on the unit sphere, where eps (0.12 officially) is measured."""

import torch
import torch.nn.functional as F

class RandomProjection:
    """x [N, C, H, W] in [-1, 1] -> unit-norm features [N, dim]. The same seed gives the same matrix anywhere."""

    def __init__(self, in_shape, dim=800, seed=0, batch=256):
        in_features = 1
        for s in in_shape:
            in_features *= int(s)
        g = torch.Generator().manual_seed(int(seed))
        self.in_shape = tuple(int(s) for s in in_shape)
        self.matrix = F.normalize(torch.randn([in_features, dim], generator=g), p=2, dim=1)
        self.batch = batch

    def to(self, device):
        """Keep the matrix on `device` (the training GPU); returns self."""
        self.matrix = self.matrix.to(device)
        return self

    @property
    def dim(self):
        return self.matrix.shape[1]

    def __call__(self, images):
        if tuple(images.shape[1:]) != self.in_shape:
            raise ValueError(f'expected images of shape [N, {", ".join(map(str, self.in_shape))}], '
                             f'got {list(images.shape)}')
        out = [F.normalize(x.flatten(1).float() @ self.matrix, p=2, dim=1) for x in images.split(self.batch)]
        return torch.cat(out) if out else torch.zeros([0, self.dim], device=self.matrix.device)
