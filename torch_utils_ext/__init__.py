"""Custom C++/CUDA ops for rtm-plugin, built with ninja on first use (after NVlabs' torch_utils/ops).

Importing this package builds nothing: a build starts the first time an op runs on a tensor.
"""
