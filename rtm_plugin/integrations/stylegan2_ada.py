"""RTM mapping network for NVlabs' stylegan2-ada-pytorch: a drop-in subclass of training.networks.MappingNetwork.

The patched Generator builds it when mapping_kwargs['map'] == 'rtm'. A network pickle embeds this module's source
(torch_utils/persistence.py) and re-executes it wherever the pickle is loaded, which may be a checkout without
rtm_plugin, patched or not. So this module imports only upstream and torch; rtm_plugin is needed to construct a
mapper, never to load one. The trunk's classes pickle with the source of rtm_plugin/rtm.py, which imports only torch.
Rules for this file (persistence): classes at top level, no relative imports, no module-level __file__.
"""

import torch
from torch_utils import misc
from torch_utils import persistence
from training import networks

try:
    from rtm_plugin import rtm
except ImportError:     # loading a pickle: fine. Constructing a new mapper says what is missing.
    rtm = None

#----------------------------------------------------------------------------

@persistence.persistent_class
class RTMMappingNetwork(networks.MappingNetwork):
    """Upstream's embed and w_avg (num_layers=0), with the Recursive Token Mapper as the trunk.

    The trunk sits under `trunk`, never `fc{i}`: --resume copies tensors by name, and upstream's fc{i} have
    other shapes.
    """
    mapper_kind = 'rtm'

    def __init__(self, z_dim, c_dim, w_dim, num_ws, embed_features=None, lr_multiplier=0.01, w_avg_beta=0.995,
                 **trunk_kwargs):
        """z_dim, c_dim, w_dim, num_ws, embed_features, w_avg_beta: as upstream's MappingNetwork. lr_multiplier
        (equalised lr) and trunk_kwargs (tokens, token_dim, H, L, block, expansion, heads) go to the trunk."""
        if rtm is None:
            raise ImportError('building an RTM mapping network needs the rtm_plugin package (pip install -e '
                              '<rtm-plugin>); loading a pickle that holds one does not')
        if 'num_layers' in trunk_kwargs:
            raise ValueError('num_layers is an option of the MLP mapper; the RTM mapper\'s depth is H (outer steps) '
                             'x L (inner cycles)')
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=0,
                         embed_features=embed_features, lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
        rtm.make_persistent(persistence.persistent_class)  # the trunk pickles with rtm.py's source
        embed_dim = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        self.trunk = rtm.RecursiveTokenMapper(z_dim + embed_dim, w_dim, lr_multiplier=lr_multiplier, **trunk_kwargs)

    def trunk_input(self, z, c):
        """Normalised [z, embed(c)], as upstream's mapping network feeds its first layer."""
        parts = []
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            parts.append(networks.normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            parts.append(networks.normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, H=None, L=None,
                halt_tol=None, H_min=1):
        """Upstream's contract, plus H/L to override the trunk's steps for this call (None = as built), and
        adaptive halting at inference (halt_tol, H_min; see RecursiveTokenMapper.halt)."""
        halting = {} if halt_tol is None else dict(halt_tol=halt_tol, H_min=H_min)
        w = self.trunk(self.trunk_input(z, c), H=H, L=L, **halting)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            # rtm.update_w_avg (non-finite rows skipped, any dtype), reached through the trunk: a pickle loaded
            # without rtm_plugin has it there, from the rtm.py source the trunk pickles with.
            self.trunk.update_w_avg(self.w_avg, w, self.w_avg_beta)
        if self.num_ws is not None:
            w = w.unsqueeze(1).repeat([1, self.num_ws, 1])      # a copy: the loss writes into it
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, 'truncation needs w_avg (w_avg_beta is None)'
            w_avg = self.w_avg.to(w.dtype)                      # a .half() mapper keeps a half w_avg
            if self.num_ws is None or truncation_cutoff is None:
                w = w_avg.lerp(w, truncation_psi)
            else:
                w[:, :truncation_cutoff] = w_avg.lerp(w[:, :truncation_cutoff], truncation_psi)
        return w.contiguous()

#----------------------------------------------------------------------------
