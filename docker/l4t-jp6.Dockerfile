# JetPack 6 (L4T R36, TensorRT 10.x, Python 3.10) device image.
# TensorRT, CUDA, cuDNN and OpenCV come from the base image: never pip-install cv2 or tensorrt here.
#   docker build -f docker/l4t-jp6.Dockerfile -t jetson-deploy:jp6 .   (on a Jetson or with qemu-aarch64)
#   docker run --runtime nvidia --rm -it --device /dev/video0 jetson-deploy:jp6 selftest
ARG BASE=nvcr.io/nvidia/l4t-jetpack:r36.3.0
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-opencv python3-dev \
        gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/jetson-deploy
COPY . .
# pycuda builds against JetPack's CUDA; the [device] extra adds pyyaml, jsonschema, cryptography only.
ENV PATH=/usr/local/cuda/bin:${PATH}
RUN pip3 install --no-cache-dir pycuda '.[device]'
ENTRYPOINT ["jetson-deploy"]
CMD ["info"]
