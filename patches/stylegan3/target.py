"""rtm-patch target: NVlabs' stylegan3 (written against commit c233a91), whose train.py trains StyleGAN2
(--cfg=stylegan2, training/networks_stylegan2.py) and the alias-free StyleGAN3 (--cfg=stylegan3-t|stylegan3-r,
training/networks_stylegan3.py).

Our own edits only: each anchor matches exactly once in the pristine file, and the text is ours. The edits this
target shares with stylegan2-ada-pytorch are in rtm_plugin/patching/stylegan_edits.py and fixes.py; the code they
call lives in rtm_plugin/integrations/stylegan_*.py.
"""

from rtm_plugin.patching import fixes, stylegan_edits as shared
from rtm_plugin.patching.spec import FilePatch, Insert, Replace, Target

NETWORKS_STYLEGAN2 = FilePatch('training/networks_stylegan2.py', shared.generator_mapper('RTMMappingNetwork'))

NETWORKS_STYLEGAN3 = FilePatch('training/networks_stylegan3.py', shared.generator_mapper('RTMMappingNetworkSG3'))

TRAIN = FilePatch('train.py', [
    Insert(r'^from torch_utils import custom_ops$', shared.IMPORT_OPTIONS, after=True, why='import our option glue'),
    Insert(r'^[ \t]+if opts\.desc is not None:$', why='--map/--rtm-* -> G mapping_kwargs and the run name', text='''
        # rtm-plugin: --map and the RTM options -> G's mapping_kwargs (and so training_options.json) and the run name.
        try:
            desc += rtm_options.configure_mapping(c.G_kwargs.mapping_kwargs, **rtm_options.train_options(opts))
        except ValueError as err:
            raise click.UsageError(str(err))
        '''),
    Insert(r"^@click\.option\('--map-depth', ", shared.TRAIN_OPTIONS, after=True, why='the click options'),
    shared.train_summary('c', width=21),
])

TRAINING_LOOP = FilePatch('training/training_loop.py', shared.resume_guard())

GEN_IMAGES = FilePatch('gen_images.py', shared.image_script(r'class_idx: Optional\[int\]'))

GEN_VIDEO = FilePatch('gen_video.py', shared.generation_script(r"^@click\.option\('--output', ", 'output: str') + [
    Insert(r'^[ \t]+gen_interp_video\(G=G, mp4=output, ', why='apply --rtm-steps',
           text='rtm_options.set_rtm_steps(G, rtm_steps) # rtm-plugin: --rtm-steps overrides H'),
    Replace(r'(?<=, psi=truncation_psi)(?=\)$)', ', device=device', why="render on G's device (the default is CUDA)"),
])

CALC_METRICS = FilePatch('calc_metrics.py', shared.calc_metrics())

METRIC_MAIN = FilePatch('metrics/metric_main.py', shared.metric_main())

# Fixes that let current PyTorch, Python, SciPy and setuptools run the checkout.

MISC = FilePatch('torch_utils/misc.py', [fixes.infinite_sampler()])

CUSTOM_OPS = FilePatch('torch_utils/custom_ops.py', fixes.custom_ops_keep_loaded_module('cached_build_dir'))

CONV2D_GRADFIX = FilePatch('torch_utils/ops/conv2d_gradfix.py', [fixes.parse_version_without_pkg_resources()])

GRID_SAMPLE_GRADFIX = FilePatch('torch_utils/ops/grid_sample_gradfix.py', [fixes.parse_version_without_pkg_resources()])

DNNLIB_UTIL = FilePatch('dnnlib/util.py', [fixes.distutils_strtobool()])

FID = FilePatch('metrics/frechet_inception_distance.py',
                fixes.sqrtm_without_disp('s', r'scipy\.linalg\.sqrtm\(np\.dot\(sigma_gen, sigma_real\)'))

TARGET = Target(
    name='stylegan3',
    identify=['train.py', 'legacy.py', 'training/networks_stylegan2.py', 'training/networks_stylegan3.py',
              'training/training_loop.py', 'torch_utils/persistence.py'],
    changes=[NETWORKS_STYLEGAN2, NETWORKS_STYLEGAN3, TRAIN, TRAINING_LOOP, GEN_IMAGES, GEN_VIDEO, CALC_METRICS,
             METRIC_MAIN, MISC, CUSTOM_OPS, CONV2D_GRADFIX, GRID_SAMPLE_GRADFIX, DNNLIB_UTIL, FID],
)
