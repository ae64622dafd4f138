# JetPack 4.6 (L4T R32.7, TensorRT 8.2) device image.
# JetPack 4.6 ships Python 3.6, and its TensorRT/OpenCV bindings are built for 3.6 only.
# jetson-deploy needs Python >= 3.8, so this image adds Ubuntu 18.04's python3.8 and runs the
# ONNX Runtime backend (or TensorRT bindings you build for 3.8 from TensorRT OSS python/):
# `jetson-deploy selftest` says which pieces are usable.
ARG BASE=nvcr.io/nvidia/l4t-base:r32.7.1
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3.8 python3.8-dev python3-pip \
        gstreamer1.0-tools gstreamer1.0-plugins-good \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/jetson-deploy
COPY . .
ENV PATH=/usr/local/cuda/bin:${PATH}
RUN python3.8 -m pip install --no-cache-dir --upgrade pip \
    && python3.8 -m pip install --no-cache-dir '.[device]'
ENTRYPOINT ["python3.8", "-m", "jetson_deploy"]
CMD ["info"]
