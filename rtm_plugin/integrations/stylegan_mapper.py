"""RTM mapping networks for NVlabs' StyleGAN trees: drop-in subclasses of their MappingNetwork classes.

    stylegan2-ada-pytorch   training/networks.py            -> RTMMappingNetwork
    stylegan3               training/networks_stylegan2.py  -> RTMMappingNetwork
                            training/networks_stylegan3.py  -> RTMMappingNetworkSG3

The patched Generators build them when mapping_kwargs['map'] == 'rtm'. A network pickle embeds this module's
source (torch_utils/persistence.py) and re-executes it wherever the pickle is loaded, which may be a checkout
without rtm_plugin, patched or not. So this module imports only upstream (and rtm_plugin optionally); rtm_plugin
is needed to construct a mapper, never to load one. The trunk's classes pickle with the source of
rtm_plugin/rtm.py, which imports only torch, and the mapper head (rtm.mapper_forward) is reached through the trunk
for that reason. Rules for this file (persistence): classes at top level, no relative imports, no module-level
__file__, and nothing shared with other rtm_plugin modules but what the trunk carries.
"""

import inspect

from torch_utils import persistence

try:                                        # NVlabs/stylegan3: two generator families, w_avg moves on update_emas
    from training import networks_stylegan2 as networks
    from training import networks_stylegan3
except ImportError:                         # NVlabs/stylegan2-ada-pytorch: w_avg moves in training mode
    from training import networks
    networks_stylegan3 = None

try:
    from rtm_plugin import rtm
except ImportError:     # loading a pickle: fine. Constructing a new mapper says what is missing.
    rtm = None

#----------------------------------------------------------------------------

def check_buildable(trunk_kwargs):
    if rtm is None:
        raise ImportError('building an RTM mapping network needs the rtm_plugin package (pip install -e '
                          '<rtm-plugin>); loading a pickle that holds one does not')
    if 'num_layers' in trunk_kwargs:
        raise ValueError('num_layers is an option of the MLP mapper; the RTM mapper\'s depth is H (outer steps) '
                         'x L (inner cycles)')

def w_avg_beta_default(mapping_class):
    """Upstream's own default decay of w_avg (0.995 in stylegan2-ada-pytorch, 0.998 in stylegan3), read from the
    class that persistence.persistent_class wrapped."""
    for cls in mapping_class.__mro__:
        param = inspect.signature(cls.__init__).parameters.get('w_avg_beta')
        if param is not None:
            return param.default
    raise TypeError(f'{mapping_class.__name__} takes no w_avg_beta')

class RTMMapper:
    """What every RTM mapper adds to upstream's MappingNetwork (built with num_layers=0, so it keeps only `embed`
    and `w_avg`): the Recursive Token Mapper as the trunk.

    The trunk sits under `trunk`, never `fc{i}`: --resume copies tensors by name, and upstream's fc{i} have
    other shapes.
    """
    mapper_kind = 'rtm'
    w_avg_follows_training = networks_stylegan3 is None    # stylegan2-ada-pytorch: in training mode; stylegan3: never

    def build_trunk(self, embed_dim, lr_multiplier, trunk_kwargs):
        rtm.make_persistent(persistence.persistent_class)  # the trunk pickles with rtm.py's source
        self.trunk = rtm.RecursiveTokenMapper(self.z_dim + embed_dim, self.w_dim, lr_multiplier=lr_multiplier,
                                              **trunk_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, *, update_emas=None,
                skip_w_avg_update=False, H=None, L=None, halt_tol=None, H_min=1, return_trace=False, use_fused=None):
        """Upstream's contract in either tree (w_avg_follows_training says when w_avg moves if update_emas is not
        given), plus H, L (None = as built), halt_tol/H_min (adaptive halting: returns (ws, steps)), return_trace
        and use_fused: the signature of every rtm_plugin mapper. The head is rtm.mapper_forward, reached through the
        trunk: a pickle loaded without rtm_plugin has it there, from the rtm.py source the trunk pickles with."""
        return self.trunk.mapper_forward(self, z, c, truncation_psi, truncation_cutoff, update_emas,
                                         skip_w_avg_update, return_trace, H=H, L=L, halt_tol=halt_tol, H_min=H_min,
                                         use_fused=use_fused)

#----------------------------------------------------------------------------

@persistence.persistent_class
class RTMMappingNetwork(RTMMapper, networks.MappingNetwork):
    """In place of the StyleGAN2 MappingNetwork (stylegan2-ada-pytorch's, and stylegan3's --cfg=stylegan2)."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, embed_features=None, lr_multiplier=0.01,
                 w_avg_beta=w_avg_beta_default(networks.MappingNetwork), **trunk_kwargs):
        """z_dim, c_dim, w_dim, num_ws, embed_features, w_avg_beta: as upstream's MappingNetwork. lr_multiplier
        (equalised lr) and trunk_kwargs (tokens, token_dim, H, L, block, expansion, heads) go to the trunk."""
        check_buildable(trunk_kwargs)
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=0,
                         embed_features=embed_features, lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
        self.build_trunk(0 if c_dim == 0 else (w_dim if embed_features is None else embed_features), lr_multiplier,
                         trunk_kwargs)

if networks_stylegan3 is not None:
    @persistence.persistent_class
    class RTMMappingNetworkSG3(RTMMapper, networks_stylegan3.MappingNetwork):
        """In place of stylegan3's alias-free MappingNetwork (--cfg=stylegan3-t and stylegan3-r)."""

        def __init__(self, z_dim, c_dim, w_dim, num_ws, lr_multiplier=0.01,
                     w_avg_beta=w_avg_beta_default(networks_stylegan3.MappingNetwork), **trunk_kwargs):
            """As RTMMappingNetwork; upstream's alias-free mapper embeds labels at w_dim."""
            check_buildable(trunk_kwargs)
            super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=0,
                             lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
            self.build_trunk(0 if c_dim == 0 else w_dim, lr_multiplier, trunk_kwargs)

#----------------------------------------------------------------------------
