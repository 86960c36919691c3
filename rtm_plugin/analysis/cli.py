"""rtm-analyze: the analysis tools as one click command with a subcommand per tool."""

import click

from rtm_plugin import __version__
from rtm_plugin.analysis import halt, hsweep, latency, neighbours, progression, sample, slerp, stability

@click.group(context_settings=dict(help_option_names=['-h', '--help']))
@click.version_option(__version__)
def main():
    """Analysis tools for RTM generators: RS-IMLE snapshots and run folders, network pickles of stylegan2-ada-pytorch
    (RTM_SG2ADA_DIR set) and stylegan3 (RTM_SG3_DIR), StudioGAN checkpoint folders (RTM_STUDIOGAN_DIR, --studiogan-cfg).

    \b
    rtm-analyze hsweep --network RUN            metrics vs inference-time H (Table 4)
    rtm-analyze progression --rtm A --mlp B     step-by-step decoding: GIF, MP4, PNG strip
    rtm-analyze stability --network RUN         per-step change of w and its contraction factor
    rtm-analyze slerp --network A --network B   SLERP interpolation grids
    rtm-analyze nn --baseline B --rtm A         nearest generated samples to real queries
    rtm-analyze latency --rtm A --mlp B         Appendix H latency protocol
    rtm-analyze halt --network RUN              adaptive halting: steps used, compute saved, metric change
    rtm-analyze sample --network RUN --halt-tol 0.01   sample grid (any H, or adaptive halting)
    """

for module in (hsweep, progression, stability, slerp, neighbours, latency, halt, sample):
    main.add_command(module.command)

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
