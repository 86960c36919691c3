"""Runs inside a stylegan2-ada-pytorch checkout (cwd) for test_analysis_sg2ada.py; prints one JSON line.

    python analysis_sg2ada_driver.py build WORKDIR     # tiny conditional RTM and MLP pickles (patched checkout)
    python analysis_sg2ada_driver.py check WORKDIR     # the analysis view against G itself (RTM_SG2ADA_DIR set)
"""

import copy
import json
import os
import pickle
import sys

import torch

def build(work):
    sys.path.insert(0, os.getcwd())
    from training import networks
    common = dict(z_dim=32, w_dim=32, c_dim=2, img_resolution=16, img_channels=3,
                  synthesis_kwargs=dict(channel_base=256, channel_max=32))
    tsk = dict(class_name='training.dataset.ImageFolderDataset', path=os.path.join(work, 'data'), use_labels=True,
               resolution=16)
    out = {}
    for name, mapping_kwargs in (('rtm', dict(map='rtm', H=3, L=1, tokens=4, token_dim=8)),
                                 ('mlp', dict(num_layers=2))):
        torch.manual_seed(0)
        G = networks.Generator(**common, mapping_kwargs=mapping_kwargs).eval().requires_grad_(False)
        D = networks.Discriminator(c_dim=2, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)
        with open(os.path.join(work, f'{name}.pkl'), 'wb') as f:          # as the training loop writes them
            pickle.dump(dict(G=G, G_ema=copy.deepcopy(G), D=D.eval().requires_grad_(False), augment_pipe=None,
                             training_set_kwargs=tsk), f)
        out[name] = type(G.mapping).__name__
    return out

@torch.no_grad()
def check(work):
    from rtm_plugin.analysis.loader import load_network
    from rtm_plugin.analysis.view import GeneratorView
    from rtm_plugin.sampling import to_uint8
    out = {}
    for name in ('rtm', 'mlp'):
        net = load_network(os.path.join(work, f'{name}.pkl'))
        view = GeneratorView(net.G)
        z, c = view.latents(5, seed=1)
        x = view.trunk_input(z, c)
        images, _ = view.images(z, c)
        out[name] = dict(
            kind=view.kind, depth=view.depth, label=view.label, c_is_one_hot=bool((c.sum(1) == 1).all()),
            tsk_path=net.training_set_kwargs.get('path'),
            w_equals_mapping=bool(torch.equal(view.ws(view.w(x)), net.G.mapping(z, c))),
            trace_last_equals_w=bool(torch.equal(view.trace(x)[-1], view.w(x))),
            images_equal_G=bool(torch.equal(images, to_uint8(net.G(z, c, noise_mode='const')))))
    return out

if __name__ == '__main__':
    command, work = sys.argv[1:3]
    print(json.dumps({'build': build, 'check': check}[command](work)))
