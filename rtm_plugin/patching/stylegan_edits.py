"""Edits shared by the targets of NVIDIA's StyleGAN trees (stylegan2-ada-pytorch, stylegan3): the Generator's choice
of mapper, train.py's RTM options, the --resume guard, --rtm-steps and dc50k5_full. Their anchors are lines these
trees have in common; each target adds the edits that are its own (patches/<target>/target.py).
"""

from rtm_plugin.patching.spec import Insert, Replace

IMPORT_OPTIONS = 'from rtm_plugin.integrations import stylegan_options as rtm_options # rtm-plugin'

RTM_STEPS_OPTION = ("@click.option('--rtm-steps', type=int, metavar='INT', help='RTM mapper: outer steps H at "
                    "inference [default: as trained]') # rtm-plugin")

# train.py: the click options (each tree's train.py passes them on its own way).
TRAIN_OPTIONS = '''
# RTM mapper (rtm-plugin).
@click.option('--map', help='Mapping network [default: mlp]', type=click.Choice(['mlp', 'rtm']))
@click.option('--rtm-h', help=f'RTM outer steps H [default: {rtm_options.DEFAULTS["H"]}]', type=int, metavar='INT')
@click.option('--rtm-l', help=f'RTM inner cycles L [default: {rtm_options.DEFAULTS["L"]}]', type=int, metavar='INT')
@click.option('--rtm-tokens', help=f'RTM latent tokens [default: {rtm_options.DEFAULTS["tokens"]}]', type=int, metavar='INT')
@click.option('--rtm-dim', help=f'RTM token width [default: {rtm_options.DEFAULTS["token_dim"]}]', type=int, metavar='INT')
@click.option('--rtm-block', help=f'RTM shared block [default: {rtm_options.DEFAULTS["block"]}]', type=click.Choice(rtm_options.BLOCK_TYPES))
'''

def train_summary(config, width):
    """train.py's summary names the mapper, after its 'Dataset x-flips:' line. `config`: the name of train.py's
    options dict; `width`: the column its values start at."""
    return Insert(rf"^[ \t]+print\(f'Dataset x-flips: +\{{{config}\.training_set_kwargs\.xflip\}}'\)$", after=True,
                  why='the summary names the mapper',
                  text=f"print(f'{'Mapping network:':<{width}}{{rtm_options.describe_mapping({config}.G_kwargs.mapping_kwargs)}}')"
                       " # rtm-plugin")

MAPPING_LINE = (r'self\.mapping = MappingNetwork\(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self\.num_ws, '
                r'\*\*mapping_kwargs\)$')

def generator_mapper(rtm_class):
    """Generator: mapping_kwargs['map'] picks 'mlp' (upstream's MappingNetwork, the default) or 'rtm' (`rtm_class`
    of rtm_plugin/integrations/stylegan_mapper.py), for the line that every tree's Generator has."""
    return [
        Insert(r'^[ \t]+' + MAPPING_LINE, why="Generator: mapping_kwargs['map'] picks 'mlp' (default) or 'rtm'", text=f'''
            # rtm-plugin: mapping_kwargs['map'] picks G's mapper, 'mlp' (upstream's, the default) or 'rtm'. Pop from a
            # copy: the caller's dict, and so this Generator's init_kwargs, keep 'map'.
            mapping_kwargs = dict(mapping_kwargs)
            mapper = mapping_kwargs.pop('map', 'mlp')
            if mapper == 'rtm':
                from rtm_plugin.integrations.stylegan_mapper import {rtm_class} as mapping_class # needed to build, not to load
            elif mapper == 'mlp':
                mapping_class = MappingNetwork
            else:
                raise ValueError(f"mapping_kwargs['map'] must be 'mlp' or 'rtm', got {{mapper!r}}")
            '''),
        Replace(r'(?<=self\.mapping = )MappingNetwork(?=\(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self\.num_ws, )',
                'mapping_class', why='Generator: build the selected class (the Discriminator keeps its own mapper)'),
    ]

def resume_guard():
    """training_loop.py: before --resume copies the pickle into G, D and G_ema by name."""
    return [
        Insert(r'^import legacy$', IMPORT_OPTIONS, after=True, why='import our resume glue'),
        Insert(r"^[ \t]+for name, module in \[\('G', G\), \('D', D\), \('G_ema', G_ema\)\]:$",
               why='--resume from an MLP pickle into --map=rtm (or back): keep synthesis, fresh mapper, log it',
               text='rtm_options.keep_compatible_mapper(resume_data, G) # rtm-plugin: a mapper of another kind starts fresh'),
    ]

def cpu_when_no_gpu():
    """The generation scripts: `torch.device('cuda')` -> the CPU when there is no GPU."""
    return Replace(r"(?<=device = torch\.device\()'cuda'\)$",
                   "'cuda' if torch.cuda.is_available() else 'cpu') # rtm-plugin",
                   why='generate on CPU when there is no GPU (the networks run there; ops fall back to their reference)')

def generation_script(option_anchor, last_parameter):
    """A generation script: import our glue, --rtm-steps after the option `option_anchor` matches, rtm_steps after
    the function's last parameter (`last_parameter`, a regex of that line), and the CPU when there is no GPU."""
    return [
        Insert(r'^import legacy$', IMPORT_OPTIONS, after=True, why='import our --rtm-steps glue'),
        Insert(option_anchor, RTM_STEPS_OPTION, after=True, why='--rtm-steps'),
        Replace(rf'(?<=^    {last_parameter})(?=\n\):)', ',\n    rtm_steps: Optional[int] = None # rtm-plugin',
                why='--rtm-steps reaches the function'),
        cpu_when_no_gpu(),
    ]

def image_script(last_parameter):
    """generate.py (stylegan2-ada-pytorch), gen_images.py (stylegan3): --rtm-steps applied before the first image."""
    return generation_script(r"^@click\.option\('--outdir', help='Where to save the output images'", last_parameter) + [
        Insert(r'^[ \t]+os\.makedirs\(outdir, exist_ok=True\)$', why='apply --rtm-steps',
               text='rtm_options.set_rtm_steps(G, rtm_steps) # rtm-plugin: --rtm-steps overrides H'),
    ]

def calc_metrics():
    """calc_metrics.py: --rtm-steps for every metric, and dc50k5_full in --help."""
    return [
        Insert(r'^from torch_utils import misc$', IMPORT_OPTIONS, after=True, why='import our --rtm-steps glue'),
        Insert(r"^@click\.option\('--verbose', ", RTM_STEPS_OPTION, after=True, why='--rtm-steps'),
        Replace(r'(?<=^def calc_metrics\(ctx, network_pkl, metrics, data, mirror, gpus, verbose)(?=\):)',
                ', rtm_steps=None', why='--rtm-steps reaches the function'),
        Insert(r'^[ \t]+# Initialize dataset options\.$', why='apply --rtm-steps before the workers get G',
               text='rtm_options.set_rtm_steps(args.G, rtm_steps) # rtm-plugin: --rtm-steps overrides H for every metric\n'),
        Insert(r'^[ \t]+pr50k3_full  Precision and recall', after=True, why='list dc50k5_full in --help',
               text='dc50k5_full  Density and coverage (k=5) against the full dataset (rtm-plugin).'),
    ]

def metric_main():
    """metrics/metric_main.py: register dc50k5_full next to pr50k3_full."""
    return [
        Insert(r'^from \. import inception_score$', after=True, why='import our metric (every process imports this file)',
               text='from rtm_plugin.integrations import stylegan_metrics as rtm_metrics # rtm-plugin'),
        Insert(r'^[ \t]+return dict\(pr50k3_full_precision=precision, pr50k3_full_recall=recall\)$', after=True,
               indent='', why='register dc50k5_full next to pr50k3_full', text='''

            register_metric(rtm_metrics.dc50k5_full) # rtm-plugin: density/coverage (Naeem et al. 2020), k=5
            '''),
    ]
