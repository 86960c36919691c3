"""rtm-patch target: POSTECH-CVLab's PyTorch-StudioGAN (written against commit 947b35e).

Our own edits only: each anchor matches exactly once in the pristine file, and the text is ours. The code the
edits call lives in rtm_plugin/integrations/studiogan*.py. The RTM configs are composed at apply time from the
checkout's own baseline YAMLs and the overlays in configs/ here, so no upstream config is stored in this repo.
"""

from rtm_plugin.patching import fixes
from rtm_plugin.patching.spec import ComposeYAML, FilePatch, Insert, Replace, Target

CONFIG = FilePatch('src/config.py', [
    Insert(r'^import utils\.ada_aug as ada_aug$', after=True, why='import our config checks',
           text='from rtm_plugin.integrations import studiogan_options as rtm_options # rtm-plugin'),
    Insert(r'^        self\.STYLEGAN\.blur_init_sigma = "N/A"$', after=True,
           why='STYLEGAN.mapping_type and the RTM keys, with defaults (an unknown YAML key is an error)', text='''
        # rtm-plugin: mapping network of G \\in ["mlp" (StyleGAN's, mapping_network layers), "rtm" (Recursive Token Mapper)]
        self.STYLEGAN.mapping_type = "mlp"
        # rtm-plugin: RTM outer steps H (may differ at evaluation), inner cycles L, latent tokens, token width and the
        # shared block \\in ["mlp", "attention"]; "N/A" = rtm_plugin's default (the log names the values used)
        self.STYLEGAN.rtm_h = "N/A"
        self.STYLEGAN.rtm_l = "N/A"
        self.STYLEGAN.rtm_tokens = "N/A"
        self.STYLEGAN.rtm_token_dim = "N/A"
        self.STYLEGAN.rtm_block = "N/A"
        '''),
    Insert(r'^    def check_compatability\(self\):$', after=True, indent=' ' * 8, why='check the mapper keys at start-up',
           text='rtm_options.check_config(self.MODEL, self.STYLEGAN) # rtm-plugin: mapping_type and the RTM keys\n'),
])

MODEL = FilePatch('src/models/model.py', [
    Insert(r'^import utils\.misc as misc$', after=True, why='import our mapper glue',
           text='from rtm_plugin.integrations import studiogan_options as rtm_options # rtm-plugin'),
    Insert(r'^[ \t]+Gen_mapping, Gen_synthesis = Gen\.mapping, Gen\.synthesis$',
           why="STYLEGAN.mapping_type 'rtm': G's mapper becomes the RTM, before DDP and the EMA deep copy",
           text='rtm_options.install_mapper(Gen, MODEL, STYLEGAN, logger if device == 0 else None) # rtm-plugin\n'),
])

WEIGHTS_ONLY = ', weights_only=False'
WEIGHTS_ONLY_WHY = 'torch >= 2.6 loads weights only by default; StudioGAN\'s checkpoints hold numpy scalars'

CKPT = FilePatch('src/utils/ckpt.py', [
    Insert(r'^import utils\.log as log$', after=True, why='import our checkpoint check',
           text='from rtm_plugin.integrations import studiogan_checkpoints as rtm_checkpoints # rtm-plugin'),
    Replace(r'(?<=    ckpt = torch\.load\(ckpt_path, map_location=lambda storage, loc: storage)\)(?=\n    if load_model:)',
            WEIGHTS_ONLY + ') # rtm-plugin: ' + WEIGHTS_ONLY_WHY, why='load_ckpt: ' + WEIGHTS_ONLY_WHY),
    Replace(r'(?<=prev_run_name = torch\.load\(Dis_ckpt_path, map_location=lambda storage, loc: storage)'
            r'(?=\)\["run_name"\]$)', WEIGHTS_ONLY, why='load_StudioGAN_ckpts: the run name, from D\'s checkpoint'),
    Replace(r'(?<=    ckpt = torch\.load\(ckpt_path, map_location=lambda storage, loc: storage)'
            r'(?=\)\n+    model\.load_state_dict\(ckpt\["state_dict"\]\)\n)', WEIGHTS_ONLY,
            why='load_GAN_train_test_model: the classifier checkpoints of GAN_train/GAN_test'),
    Insert(r'^[ \t]+model\.load_state_dict\(ckpt\["state_dict"\], strict=True\)$',
           why="one clear message when the YAML's mapper is not the checkpoint's, not a wall of missing keys",
           text='rtm_checkpoints.check_mapper(model, ckpt["state_dict"], ckpt_path) # rtm-plugin\n'),
])

PARSE_VERSION = '''\
def parse_version(version): # rtm-plugin: pkg_resources is gone from current setuptools; torch's version type compares
    return torch.torch_version.TorchVersion(version)
'''

def gradfix(path):
    return FilePatch(path, [Replace(r'^from pkg_resources import parse_version$', PARSE_VERSION,
                                    why='pkg_resources is gone from current setuptools (import error)')])

FID = FilePatch('src/metrics/fid.py', fixes.sqrtm_without_disp('covmean', r'linalg\.sqrtm\(sigma1\.dot\(sigma2\)'))

# RTM twins of the paper's StyleGAN2 rows: the checkout's baseline YAML plus overlays from configs/ here. Where
# StudioGAN has no unconditional ADA config, the unconditional MLP baseline is written too, so every *-RTM.yaml
# has a baseline in the checkout that differs from it in the mapper keys only.
RTM, UNCOND = 'configs/rtm.yaml', 'configs/uncond.yaml'

def compose(path, base, *overlays, why):
    return ComposeYAML(f'src/configs/{path}', f'src/configs/{base}', overlays, why=why)

CONFIGS = [
    compose('CIFAR10/StyleGAN2-RTM.yaml', 'CIFAR10/StyleGAN2.yaml', RTM, why='CIFAR10 StyleGAN2, conditional'),
    compose('CIFAR10/StyleGAN2-Uncond-RTM.yaml', 'CIFAR10/StyleGAN2-Uncond.yaml', RTM,
            why='CIFAR10 StyleGAN2, unconditional'),
    compose('CIFAR10/StyleGAN2-ADA-RTM.yaml', 'CIFAR10/StyleGAN2-ADA.yaml', RTM,
            why='CIFAR10 StyleGAN2-ADA, conditional'),
    compose('CIFAR10/StyleGAN2-ADA-Uncond.yaml', 'CIFAR10/StyleGAN2-ADA.yaml', UNCOND,
            why='CIFAR10 StyleGAN2-ADA, unconditional: the MLP baseline'),
    compose('CIFAR10/StyleGAN2-ADA-Uncond-RTM.yaml', 'CIFAR10/StyleGAN2-ADA.yaml', UNCOND, RTM,
            why='CIFAR10 StyleGAN2-ADA, unconditional'),
    compose('AFHQ/StyleGAN2-ADA-Uncond.yaml', 'AFHQ/StyleGAN2-SPD-ADA.yaml', UNCOND,
            why='AFHQ 512 StyleGAN2-ADA, unconditional: the MLP baseline'),
    compose('AFHQ/StyleGAN2-ADA-Uncond-RTM.yaml', 'AFHQ/StyleGAN2-SPD-ADA.yaml', UNCOND, RTM,
            why='AFHQ 512 StyleGAN2-ADA, unconditional'),
    compose('AFHQv2/StyleGAN2-paper-RTM.yaml', 'AFHQv2/StyleGAN2-paper.yaml', RTM,
            why='AFHQv2 512 StyleGAN2 (ADA, unconditional), the StyleGAN2 paper\'s settings'),
]

TARGET = Target(
    name='studiogan',
    identify=['src/main.py', 'src/config.py', 'src/models/stylegan2.py', 'src/utils/ckpt.py'],
    changes=[CONFIG, MODEL, CKPT,
             gradfix('src/utils/style_ops/conv2d_gradfix.py'), gradfix('src/utils/style_ops/grid_sample_gradfix.py'),
             FilePatch('src/utils/style_ops/dnnlib/util.py', [fixes.distutils_strtobool()]),
             FilePatch('src/utils/custom_ops.py', fixes.custom_ops_keep_loaded_module('cached_build_dir')),
             FID, *CONFIGS],
)
