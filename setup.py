import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# The one version source is rtm_plugin.__version__; read as text so that building needs no torch.
VERSION = re.search(r"^__version__ = '([^']+)'", (HERE / 'rtm_plugin' / '__init__.py').read_text(), re.M).group(1)

setup(
    name='rtm-plugin',
    version=VERSION,
    description='Recursive Token Mapper (arXiv 2605.15309) for StyleGAN-family and IMLE generators',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='MIT',
    license_files=['LICENSE'],
    classifiers=[
        'Programming Language :: Python :: 3',
        'Operating System :: OS Independent',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    # patches/ stays at the top of the source tree; wheels carry it as the package data rtm_plugin/_patches.
    packages=find_packages(include=['rtm_plugin', 'rtm_plugin.*', 'torch_utils_ext', 'torch_utils_ext.*'])
    + ['rtm_plugin._patches'],
    package_dir={'rtm_plugin._patches': 'patches'},
    package_data={'torch_utils_ext': ['*.h', '*.cpp', '*.cu', '*.cuh'], 'rtm_plugin.imle.presets': ['*.yaml'],
                  'rtm_plugin._patches': ['**/*']},
    exclude_package_data={'rtm_plugin._patches': ['**/__pycache__/*', '**/*.pyc']},
    include_package_data=True,
    python_requires='>=3.10',
    install_requires=[
        'torch>=2.6',
        'numpy',
        'click',
        'tqdm',
        'pillow',
        'scipy',
        'scikit-learn',
        'ninja',
        'pyyaml',
        'matplotlib',
        # stylegan2-ada-pytorch imports these at module level (dnnlib/util.py, training/training_loop.py): with
        # them, `pip install -e .` is all that train.py, generate.py and calc_metrics.py of a patched checkout need.
        'requests',
        'psutil',
    ],
    extras_require={
        # The suite; what StudioGAN's modules that the integration tests load import at module level; a setuptools
        # that builds wheels by itself (tests/test_install.py builds offline, without build isolation).
        'test': ['pytest', 'prdc', 'scikit-image', 'faiss-cpu', 'seaborn', 'kornia', 'setuptools>=70.1',
                 'imageio-ffmpeg', 'tensorboard'],
        'faiss': ['faiss-cpu'],
        'video': ['imageio', 'imageio-ffmpeg'],
        'tensorboard': ['tensorboard'],
    },
    entry_points={'console_scripts': [
        'rtm-eval=rtm_plugin.metrics.cli:main',
        'rtm-summary=rtm_plugin.summary:main',
        'rtm-patch=rtm_plugin.patching.cli:main',
        'rtm-imle=rtm_plugin.imle.cli:main',
        'rtm-imle-prepare=rtm_plugin.imle.prepare:main',
        'rtm-analyze=rtm_plugin.analysis.cli:main',
    ]},
)
