from setuptools import find_packages, setup

setup(
    name='rtm-plugin',
    version='0.1.0',
    description='Recursive Token Mapper (arXiv 2605.15309) for StyleGAN-family and IMLE generators',
    packages=find_packages(include=['rtm_plugin', 'rtm_plugin.*', 'torch_utils_ext', 'torch_utils_ext.*']),
    package_data={'torch_utils_ext': ['*.h', '*.cpp', '*.cu', '*.cuh'], 'rtm_plugin.imle.presets': ['*.yaml']},
    include_package_data=True,
    python_requires='>=3.9',
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
    ],
    extras_require={
        'test': ['pytest', 'prdc', 'scikit-image', 'faiss-cpu'],
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
