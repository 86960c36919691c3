"""RTM mapping network for POSTECH-CVLab's PyTorch-StudioGAN: a drop-in subclass of src/models/stylegan2.py's
MappingNetwork.

The patched src/models/model.py puts it in place of G's mapper when the YAML says STYLEGAN.mapping_type: "rtm"
(rtm_plugin/integrations/studiogan_options.py). StudioGAN keeps state dicts, not pickles, so this module may use
rtm_plugin freely. It imports `models.stylegan2`, so it is imported from inside StudioGAN's src/ only.
"""

from models import stylegan2

from rtm_plugin.mapping import MapperHead
from rtm_plugin.rtm import RecursiveTokenMapper

class RTMMappingNetwork(MapperHead, stylegan2.MappingNetwork):
    """Upstream's embed and w_avg (built with num_layers=0), with the Recursive Token Mapper as the trunk.

    Contract, as upstream's: forward(z, c, truncation_psi=1, truncation_cutoff=None, *, update_emas) with c
    one-hot (ignored when c_dim == 0), w_avg updated only when update_emas, and a contiguous [N, num_ws, w_dim]
    result that callers may write into (style mixing does); plus the per-call options of every rtm_plugin mapper
    (MapperHead.forward: H, L, halt_tol, H_min, return_trace, use_fused). Every parameter takes part in every forward:
    StudioGAN wraps G.mapping alone in DDP without find_unused_parameters. The trunk's carries H_init/L_init are
    fixed buffers, so the EMA generator's verbatim buffer copy leaves them equal in G and G_ema.
    """
    mapper_kind = 'rtm'
    w_avg_follows_training = False      # as upstream's: w_avg moves only when update_emas

    def __init__(self, z_dim, c_dim, w_dim, num_ws, embed_features=None, lr_multiplier=0.01, w_avg_beta=0.998,
                 **trunk_kwargs):
        """z_dim, c_dim, w_dim, num_ws, embed_features, w_avg_beta: as upstream's MappingNetwork. lr_multiplier
        (equalised lr) and trunk_kwargs (tokens, token_dim, H, L, block, expansion, heads) go to the trunk."""
        if 'num_layers' in trunk_kwargs:
            raise ValueError('num_layers is an option of the MLP mapper; the RTM mapper\'s depth is H (outer steps) '
                             'x L (inner cycles)')
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=0,
                         embed_features=embed_features, lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
        self.embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        self.trunk = RecursiveTokenMapper(z_dim + self.embed_features, w_dim, lr_multiplier=lr_multiplier,
                                          **trunk_kwargs)
