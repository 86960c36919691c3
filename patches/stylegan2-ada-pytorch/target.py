"""rtm-patch target: NVlabs' stylegan2-ada-pytorch (written against commit d72cc7d).

Our own edits only: each anchor matches exactly once in the pristine file, and the text is ours. The code the
edits call lives in rtm_plugin/integrations/stylegan_*.py.
"""

from rtm_plugin.patching import fixes, stylegan_edits as shared
from rtm_plugin.patching.spec import FilePatch, Insert, Target

NETWORKS = FilePatch('training/networks.py', shared.generator_mapper('RTMMappingNetwork'))

TRAIN = FilePatch('train.py', [
    Insert(r'^from torch_utils import custom_ops$', shared.IMPORT_OPTIONS, after=True, why='import our option glue'),
    Insert(r'^[ \t]+workers[ \t]+= None, # Override number of DataLoader workers', after=True,
           why='setup_training_loop_kwargs: a keyword for every new click option', text='''
        # RTM mapper (rtm-plugin).
        map        = None, # Mapping network: 'mlp' (default, upstream's) or 'rtm'
        rtm_h      = None, # RTM outer steps H: <int>
        rtm_l      = None, # RTM inner cycles L per outer step: <int>
        rtm_tokens = None, # RTM latent tokens: <int>
        rtm_dim    = None, # RTM token width: <int>
        rtm_block  = None, # RTM shared block: 'mlp' (MLP-Mixer) or 'attention'
        '''),
    Insert(r'^[ \t]+if gamma is not None:$', why='--map/--rtm-* -> G mapping_kwargs and the run name', text='''
        # rtm-plugin: --map and the RTM options -> G's mapping_kwargs (and so training_options.json) and the run name.
        try:
            desc += rtm_options.configure_mapping(args.G_kwargs.mapping_kwargs, map=map, rtm_h=rtm_h, rtm_l=rtm_l,
                                                  rtm_tokens=rtm_tokens, rtm_dim=rtm_dim, rtm_block=rtm_block)
        except ValueError as err:
            raise UserError(str(err))

        '''),
    Insert(r"^@click\.option\('--workers', ", shared.TRAIN_OPTIONS, after=True, why='the click options'),
    shared.train_summary('args', width=20),
])

TRAINING_LOOP = FilePatch('training/training_loop.py', shared.resume_guard())

GENERATE = FilePatch('generate.py', shared.image_script(r'projected_w: Optional\[str\]'))

CALC_METRICS = FilePatch('calc_metrics.py', shared.calc_metrics())

METRIC_MAIN = FilePatch('metrics/metric_main.py', shared.metric_main())

# Fixes that let current PyTorch, Python and SciPy run the checkout.

MISC = FilePatch('torch_utils/misc.py', [fixes.infinite_sampler()])

CUSTOM_OPS = FilePatch('torch_utils/custom_ops.py', fixes.custom_ops_keep_loaded_module('build_dir'))

DNNLIB_UTIL = FilePatch('dnnlib/util.py', [fixes.distutils_strtobool()])

FID = FilePatch('metrics/frechet_inception_distance.py',
                fixes.sqrtm_without_disp('s', r'scipy\.linalg\.sqrtm\(np\.dot\(sigma_gen, sigma_real\)'))

TARGET = Target(
    name='stylegan2-ada-pytorch',
    identify=['train.py', 'legacy.py', 'training/networks.py', 'training/training_loop.py', 'torch_utils/persistence.py'],
    changes=[NETWORKS, TRAIN, TRAINING_LOOP, GENERATE, CALC_METRICS, METRIC_MAIN, MISC, CUSTOM_OPS, DNNLIB_UTIL, FID],
)
