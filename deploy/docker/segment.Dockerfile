# syntax=docker/dockerfile:1.7
# The GPU image of the segment worker:
#   docker build -f deploy/docker/segment.Dockerfile -t segstream-segment:0.1.0 .
# torch's CUDA 13 wheels bring the CUDA runtime libraries; the CUDA base image brings the
# rest of the user space the NVIDIA container toolkit expects. The compiled ops are built
# for sm_80 (A100) and sm_90 (H100) with nvcc from PyPI, as in CI.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.12=3.12.3-1ubuntu0.8 python3.12-venv=3.12.3-1ubuntu0.8 \
      python3.12-dev=3.12.3-1ubuntu0.8 g++-13=13.3.0-6ubuntu2~24.04 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 CXX=g++-13 \
    TORCH_CUDA_ARCH_LIST="8.0;9.0"
RUN python3.12 -m venv /opt/segstream \
 && /opt/segstream/bin/pip install --no-cache-dir pip==25.3
COPY pyproject.toml README.md ./
COPY segcore ./segcore
COPY cuda_ext ./cuda_ext
COPY services ./services
COPY configs ./configs
RUN /opt/segstream/bin/pip install --no-cache-dir ".[build]" \
 && /opt/segstream/bin/python -m cuda_ext.build --require-cuda

FROM ${CUDA_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.3-1ubuntu0.8 libgomp1=14.2.0-4ubuntu2~24.04 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 segstream \
 && useradd --system --uid 10001 --gid segstream --home-dir /nonexistent --shell /usr/sbin/nologin segstream
COPY --from=build /opt/segstream /opt/segstream
ENV PATH=/opt/segstream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SEGSTREAM_HOST=0.0.0.0 \
    SEGSTREAM_CACHE_DIR=/tmp/segstream \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 9400
ENTRYPOINT ["segstream"]
CMD ["segment", "--device", "cuda"]
