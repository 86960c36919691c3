"""Analysis tools for RTM generators, one module per tool, behind the rtm-analyze command (cli.py):

hsweep (metrics vs inference-time H), progression (step-by-step decoding), stability (trajectory contraction),
slerp (interpolation grids), neighbours (nearest generated samples to real queries), latency (Appendix H),
halt (adaptive halting report), sample (grids at any H or with halting). loader.py loads RS-IMLE snapshots and
StyleGAN2-ADA pickles; view.py gives every mapper one interface."""
