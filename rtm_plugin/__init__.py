"""rtm-plugin: the Recursive Token Mapper (arXiv 2605.15309) for StyleGAN-family and IMLE generators."""

from rtm_plugin.rtm import RecursiveTokenMapper, MixerBlock, AttentionBlock
from rtm_plugin.mapping import MappingNetworkBase, RTMMappingNetwork, MLPMappingNetwork, build_mapping

__version__ = '0.1.0'
