"""jetson-deploy packaging.

The base install is what a Jetson needs to run a bundle: numpy, click, tqdm.
OpenCV, TensorRT and pycuda come from JetPack there, so no extra pulls a pip
``cv2`` that would shadow JetPack's GStreamer-enabled build.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "jetson_deploy" / "__init__.py").read_text()).group(1)

DEVICE = ["pyyaml>=5.3", "jsonschema>=3.2", "cryptography>=3.4"]
HOST = DEVICE + [
    "torch>=1.10",  # CPU-only machines: install torch==2.13.0 first (scripts/setup.sh does)
    "onnx>=1.12",
    "onnxscript>=0.1; python_version>='3.10'",
    "onnxruntime>=1.12",
    "opencv-python-headless>=4.5",
]
JETSON = DEVICE + ["pycuda>=2021.1"]  # builds against JetPack's CUDA on the board
DEV = ["pytest>=7", "pytest-timeout", "vermin>=1.5"]

setup(
    name="jetson-deploy",
    version=version,
    description="Calibrate, convert, bundle, deploy and run PyTorch models on NVIDIA Jetson",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.8",
    packages=find_packages(include=["jetson_deploy", "jetson_deploy.*"]),
    package_data={"jetson_deploy": ["demo/*.pt", "demo/*.yaml", "demo/*.json", "bundle/*.json"]},
    include_package_data=True,
    install_requires=["numpy>=1.19", "click>=7.1", "tqdm>=4.50"],
    extras_require={"device": DEVICE, "jetson": JETSON, "host": HOST, "dev": DEV, "all": HOST + DEV},
    entry_points={"console_scripts": ["jetson-deploy=jetson_deploy.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.8",
        "Operating System :: POSIX :: Linux",
    ],
)
