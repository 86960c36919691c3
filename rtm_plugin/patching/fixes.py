"""Edits shared by several targets: current-stack fixes for code that NVIDIA's StyleGAN repositories passed on
(stylegan2-ada-pytorch's and stylegan3's dnnlib and torch_utils, StudioGAN's copies under src/utils/)."""

from rtm_plugin.patching.spec import Replace

STRTOBOOL = '''\
def strtobool(val): # rtm-plugin: distutils is gone in Python 3.12; the answers of distutils.util.strtobool
    val = val.lower()
    if val in ('y', 'yes', 't', 'true', 'on', '1'):
        return 1
    if val in ('n', 'no', 'f', 'false', 'off', '0'):
        return 0
    raise ValueError(f'invalid truth value {val!r}')
'''

def distutils_strtobool():
    """dnnlib/util.py imports strtobool from distutils, which Python 3.12 removed."""
    return Replace(r'^from distutils\.util import strtobool$', STRTOBOOL, why='distutils is gone in Python 3.12')

def custom_ops_keep_loaded_module(build_directory):
    """custom_ops.get_plugin: keep the module cpp_extension.load() returns instead of importing it again by name,
    which fails with pybind11 3 (torch 2.13). `build_directory`: the variable the cached-build branch passes."""
    return [
        Replace(rf'(?=torch\.utils\.cpp_extension\.load\(name=module_name, build_directory={build_directory},)',
                'module = ', why='keep the module load() returns (cached-build branch)'),
        Replace(r'(?=torch\.utils\.cpp_extension\.load\(name=module_name, verbose=verbose_build, sources=sources, )',
                'module = ', why='keep the module load() returns'),
        Replace(r'module = importlib\.import_module\(module_name\)$',
                'pass # rtm-plugin: use the module load() returned; importing it again by name fails with pybind11 3',
                why='get_plugin: import_module fails after a good build with pybind11 3 (torch 2.13)'),
    ]

def sqrtm_without_disp(result, call):
    """FID: `result, _ = <call>, disp=False)` -> `result = <call>)`. scipy.linalg.sqrtm(disp=False) is deprecated
    in SciPy 1.16 and removed in 1.18. `call`: a regex of the sqrtm call up to its closing parenthesis."""
    return [
        Replace(rf'{result}, _ = (?={call}, disp=False\))', f'{result} = ',
                why='sqrtm returns only the root without disp'),
        Replace(rf'(?<={call}), disp=False\)',
                ') # rtm-plugin: disp=False is deprecated in SciPy 1.16 and removed in 1.18',
                why='scipy.linalg.sqrtm(disp=False) is deprecated (SciPy 1.16) and removed in 1.18'),
    ]

def infinite_sampler():
    """torch_utils/misc.py: InfiniteSampler calls Sampler.__init__(dataset), which raises TypeError on torch 2.13."""
    return Replace(r'super\(\)\.__init__\(dataset\)$',
                   'super().__init__() # rtm-plugin: torch >= 2.13 Sampler takes no data_source',
                   why='InfiniteSampler: Sampler.__init__(dataset) raises TypeError on torch 2.13')

def parse_version_without_pkg_resources():
    """torch_utils/ops/*_gradfix.py import parse_version from pkg_resources, which setuptools 81 removed. torch's
    own TorchVersion compares versions the same way (PEP 440, through torch's vendored packaging)."""
    return Replace(r'^from pkg_resources import parse_version$',
                   'from torch.torch_version import TorchVersion as parse_version # rtm-plugin: pkg_resources is '
                   'gone in setuptools >= 81',
                   why='pkg_resources is gone in setuptools >= 81; torch.torch_version.TorchVersion parses the same')
