# JetPack 4.6 (L4T R32.7, TensorRT 8.2, Python 3.6, OpenCV 4.1.1) device image: the Jetson Nano.
# jetson-deploy's device side runs on JetPack's own Python 3.6, so JetPack's TensorRT 8.2 and
# GStreamer-enabled OpenCV bindings (built for 3.6 only) are used as they are: no second Python.
# On JetPack 4.x the nvidia container runtime mounts TensorRT, CUDA and OpenCV from the host, so
# building pycuda needs "default-runtime": "nvidia" in /etc/docker/daemon.json (NVIDIA's L4T notes).
#   docker build -f docker/l4t-jp46.Dockerfile -t jetson-deploy:jp46 .
#   docker run --runtime nvidia --rm -it --device /dev/video0 jetson-deploy:jp46 selftest
ARG BASE=nvcr.io/nvidia/l4t-base:r32.7.1
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-dev python3-venv \
        gstreamer1.0-tools gstreamer1.0-plugins-good \
    && rm -rf /var/lib/apt/lists/*
# numpy on the Nano's Cortex-A57 needs the ARMV8 OpenBLAS kernel (else "Illegal instruction").
ENV OPENBLAS_CORETYPE=ARMV8 PATH=/usr/local/cuda/bin:${PATH}
WORKDIR /opt/jetson-deploy
COPY . .
# Ubuntu 18.04's pip 9 cannot read manylinux2014 wheels: upgrade it first (21.x is the last for 3.6);
# setup.py's markers then pick cp36 wheels (numpy 1.19.5, cryptography 36, jsonschema 3.2) at once.
RUN python3 -m pip install --no-cache-dir "pip>=21,<22" \
    && python3 -m pip install --no-cache-dir '.[jetson]'
ENTRYPOINT ["python3", "-m", "jetson_deploy"]
CMD ["info"]
