"""rtm-patch target: NVlabs' stylegan2-ada-pytorch (written against commit d72cc7d).

Our own edits only: each anchor matches exactly once in the pristine file, and the text is ours. The code the
edits call lives in rtm_plugin/integrations/stylegan2_ada*.py.
"""

from rtm_plugin.patching import fixes
from rtm_plugin.patching.spec import FilePatch, Insert, Replace, Target

IMPORT_OPTIONS = 'from rtm_plugin.integrations import stylegan2_ada_options as rtm_options # rtm-plugin'

RTM_STEPS_OPTION = ("@click.option('--rtm-steps', type=int, metavar='INT', help='RTM mapper: outer steps H at "
                    "inference [default: as trained]') # rtm-plugin")

NETWORKS = FilePatch('training/networks.py', [
    Insert(r'^[ \t]+self\.mapping = MappingNetwork\(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self\.num_ws, '
           r'\*\*mapping_kwargs\)$', why="Generator: mapping_kwargs['map'] picks 'mlp' (default) or 'rtm'", text='''
        # rtm-plugin: mapping_kwargs['map'] picks G's mapper, 'mlp' (upstream's, the default) or 'rtm'. Pop from a
        # copy: the caller's dict, and so this Generator's init_kwargs, keep 'map'.
        mapping_kwargs = dict(mapping_kwargs)
        mapper = mapping_kwargs.pop('map', 'mlp')
        if mapper == 'rtm':
            from rtm_plugin.integrations.stylegan2_ada import RTMMappingNetwork as mapping_class # needed to build, not to load
        elif mapper == 'mlp':
            mapping_class = MappingNetwork
        else:
            raise ValueError(f"mapping_kwargs['map'] must be 'mlp' or 'rtm', got {mapper!r}")
        '''),
    Replace(r'(?<=self\.mapping = )MappingNetwork(?=\(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self\.num_ws, )',
            'mapping_class', why='Generator: build the selected class (the Discriminator keeps its own mapper)'),
])

TRAIN = FilePatch('train.py', [
    Insert(r'^from torch_utils import custom_ops$', IMPORT_OPTIONS, after=True, why='import our option glue'),
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
    Insert(r"^@click\.option\('--workers', ", after=True, why='the click options', text='''
        # RTM mapper (rtm-plugin).
        @click.option('--map', help='Mapping network [default: mlp]', type=click.Choice(['mlp', 'rtm']))
        @click.option('--rtm-h', help=f'RTM outer steps H [default: {rtm_options.DEFAULTS["H"]}]', type=int, metavar='INT')
        @click.option('--rtm-l', help=f'RTM inner cycles L [default: {rtm_options.DEFAULTS["L"]}]', type=int, metavar='INT')
        @click.option('--rtm-tokens', help=f'RTM latent tokens [default: {rtm_options.DEFAULTS["tokens"]}]', type=int, metavar='INT')
        @click.option('--rtm-dim', help=f'RTM token width [default: {rtm_options.DEFAULTS["token_dim"]}]', type=int, metavar='INT')
        @click.option('--rtm-block', help=f'RTM shared block [default: {rtm_options.DEFAULTS["block"]}]', type=click.Choice(rtm_options.BLOCK_TYPES))
        '''),
    Insert(r"^[ \t]+print\(f'Dataset x-flips: +\{args\.training_set_kwargs\.xflip\}'\)$", after=True,
           why='the summary names the mapper',
           text="print(f'Mapping network:    {rtm_options.describe_mapping(args.G_kwargs.mapping_kwargs)}') # rtm-plugin"),
])

TRAINING_LOOP = FilePatch('training/training_loop.py', [
    Insert(r'^import legacy$', IMPORT_OPTIONS, after=True, why='import our resume glue'),
    Insert(r"^[ \t]+for name, module in \[\('G', G\), \('D', D\), \('G_ema', G_ema\)\]:$",
           why='--resume from an MLP pickle into --map=rtm (or back): keep synthesis, fresh mapper, log it',
           text='rtm_options.keep_compatible_mapper(resume_data, G) # rtm-plugin: a mapper of another kind starts fresh'),
])

GENERATE = FilePatch('generate.py', [
    Insert(r'^import legacy$', IMPORT_OPTIONS, after=True, why='import our --rtm-steps glue'),
    Insert(r"^@click\.option\('--outdir', help='Where to save the output images'", RTM_STEPS_OPTION, after=True,
           why='--rtm-steps'),
    Replace(r'(?<=^    projected_w: Optional\[str\])(?=\n\):)', ',\n    rtm_steps: Optional[int] = None # rtm-plugin',
            why='--rtm-steps reaches the function'),
    Replace(r"(?<=device = torch\.device\()'cuda'\)$", "'cuda' if torch.cuda.is_available() else 'cpu') # rtm-plugin",
            why='generate on CPU when there is no GPU (the networks run there; ops fall back to their reference)'),
    Insert(r'^[ \t]+os\.makedirs\(outdir, exist_ok=True\)$', why='apply --rtm-steps',
           text='rtm_options.set_rtm_steps(G, rtm_steps) # rtm-plugin: --rtm-steps overrides H'),
])

CALC_METRICS = FilePatch('calc_metrics.py', [
    Insert(r'^from torch_utils import misc$', IMPORT_OPTIONS, after=True, why='import our --rtm-steps glue'),
    Insert(r"^@click\.option\('--verbose', ", RTM_STEPS_OPTION, after=True, why='--rtm-steps'),
    Replace(r'(?<=^def calc_metrics\(ctx, network_pkl, metrics, data, mirror, gpus, verbose)(?=\):)', ', rtm_steps=None',
            why='--rtm-steps reaches the function'),
    Insert(r'^[ \t]+# Initialize dataset options\.$', why='apply --rtm-steps before the workers get G',
           text='rtm_options.set_rtm_steps(args.G, rtm_steps) # rtm-plugin: --rtm-steps overrides H for every metric\n'),
    Insert(r'^[ \t]+pr50k3_full  Precision and recall', after=True, why='list dc50k5_full in --help',
           text='dc50k5_full  Density and coverage (k=5) against the full dataset (rtm-plugin).'),
])

METRIC_MAIN = FilePatch('metrics/metric_main.py', [
    Insert(r'^from \. import inception_score$', after=True, why='import our metric (every process imports this file)',
           text='from rtm_plugin.integrations import stylegan2_ada_metrics as rtm_metrics # rtm-plugin'),
    Insert(r'^[ \t]+return dict\(pr50k3_full_precision=precision, pr50k3_full_recall=recall\)$', after=True, indent='',
           why='register dc50k5_full next to pr50k3_full', text='''

        register_metric(rtm_metrics.dc50k5_full) # rtm-plugin: density/coverage (Naeem et al. 2020), k=5
        '''),
])

# Fixes that let current PyTorch, Python and SciPy run the checkout.

MISC = FilePatch('torch_utils/misc.py', [
    Replace(r'super\(\)\.__init__\(dataset\)$', 'super().__init__() # rtm-plugin: torch >= 2.13 Sampler takes no data_source',
            why='InfiniteSampler: Sampler.__init__(dataset) raises TypeError on torch 2.13'),
])

CUSTOM_OPS = FilePatch('torch_utils/custom_ops.py', fixes.custom_ops_keep_loaded_module('build_dir'))

DNNLIB_UTIL = FilePatch('dnnlib/util.py', [fixes.distutils_strtobool()])

FID = FilePatch('metrics/frechet_inception_distance.py',
                fixes.sqrtm_without_disp('s', r'scipy\.linalg\.sqrtm\(np\.dot\(sigma_gen, sigma_real\)'))

TARGET = Target(
    name='stylegan2-ada-pytorch',
    identify=['train.py', 'legacy.py', 'training/networks.py', 'training/training_loop.py', 'torch_utils/persistence.py'],
    changes=[NETWORKS, TRAIN, TRAINING_LOOP, GENERATE, CALC_METRICS, METRIC_MAIN, MISC, CUSTOM_OPS, DNNLIB_UTIL, FID],
)
