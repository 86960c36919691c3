"""A stand-in for the torchvision names that StudioGAN's src/utils/misc.py and src/metrics/fid.py import at module
level, for tests/integration/studiogan_driver.py only, and only where the real torchvision does not import
(PyPI's build needs a CUDA torch: it fails beside the CPU torch of a test machine). The tested code never calls
them; each one raises if it is called."""

from . import datasets, transforms, utils
