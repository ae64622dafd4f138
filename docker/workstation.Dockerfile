# x86 workstation image: calibrate, convert (ONNX path), bundle, deploy, run on ONNX Runtime.
#   docker build -f docker/workstation.Dockerfile -t jetson-deploy:workstation .
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client rsync libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/jetson-deploy
COPY . .
# CPU-only torch first: a plain `torch` requirement would pull several GB of CUDA wheels.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir '.[host]'
ENTRYPOINT ["jetson-deploy"]
CMD ["--help"]
