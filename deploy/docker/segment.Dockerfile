# syntax=docker/dockerfile:1.7
# The GPU image of the segment worker:
#   docker build -f deploy/docker/segment.Dockerfile -t segstream-segment:0.1.0 .
# torch's CUDA 13 wheels bring the CUDA runtime libraries; the CUDA base image brings the
# rest of the user space the NVIDIA container toolkit expects. The compiled ops are built
# for sm_80 (A100) and sm_90 (H100) with nvcc from PyPI, as in CI.
#
# CUDA_IMAGE, the base of both stages: NVIDIA's Ubuntu 24.04 image by default (Python 3.12
# and g++ 13 from Ubuntu), or a Debian bookworm image (its Python 3.11 and g++ 12), as
# scripts/images.sh passes; the packages of either are pinned.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

# The sources the build needs, gathered in a stage of their own: the build stage takes
# them in one layer.
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY segcore /src/segcore
COPY cuda_ext /src/cuda_ext
COPY services /src/services
COPY configs /src/configs
COPY clients/python /src/clients/python

FROM ${CUDA_IMAGE} AS build
RUN apt-get update \
 && . /etc/os-release \
 && if [ "${VERSION_CODENAME}" = bookworm ]; then \
      apt-get install -y --no-install-recommends \
        python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 python3-dev=3.11.2-1+b1 g++=4:12.2.0-3; \
    else \
      apt-get install -y --no-install-recommends \
        python3.12=3.12.3-1ubuntu0.8 python3.12-venv=3.12.3-1ubuntu0.8 \
        python3.12-dev=3.12.3-1ubuntu0.8 g++-13=13.3.0-6ubuntu2~24.04; \
    fi \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 TORCH_CUDA_ARCH_LIST="8.0;9.0" PATH=/opt/segstream/bin:$PATH
COPY --from=source /src /src
# One layer. torch's wheels and the CUDA libraries they bring (GBs) are kept in a wheelhouse
# in a cache mount, shared by builds and never in the image: `pip download` fetches only
# what it lacks.
RUN --mount=type=cache,id=segstream-pip,target=/root/.cache/pip \
    python="$(command -v python3.12 || command -v python3)" \
 && "${python}" -m venv /opt/segstream \
 && pip install pip==25.3 \
 && pip download --dest /root/.cache/pip/wheelhouse torch==2.15.0 torchvision==0.29.2 \
 && pip install --no-index --find-links /root/.cache/pip/wheelhouse torch==2.15.0 torchvision==0.29.2 \
 && pip install /src/clients/python "/src[build]" \
 && CXX="$(command -v g++-13 || command -v g++)" python -P -m cuda_ext.build --require-cuda

FROM ${CUDA_IMAGE} AS runtime
RUN apt-get update \
 && . /etc/os-release \
 && if [ "${VERSION_CODENAME}" = bookworm ]; then \
      apt-get install -y --no-install-recommends python3=3.11.2-1+b1 libgomp1=12.2.0-14+deb12u1; \
    else \
      apt-get install -y --no-install-recommends python3.12=3.12.3-1ubuntu0.8 libgomp1=14.2.0-4ubuntu2~24.04; \
    fi \
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
