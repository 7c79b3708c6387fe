# syntax=docker/dockerfile:1.7
# The CPU images: the API and the ingest worker (and a segment worker for CPU nodes):
#   docker build -f deploy/docker/cpu.Dockerfile --target api -t segstream-api:0.1.0 .
#   docker build -f deploy/docker/cpu.Dockerfile --target ingest -t segstream-ingest:0.1.0 .
#   docker build -f deploy/docker/cpu.Dockerfile --target segment-cpu -t segstream-segment-cpu:0.1.0 .
# The build stage makes a virtual environment with the project and its compiled ops (CPU
# kernels; the CUDA image is segment.Dockerfile); the runtime stage copies it onto a slim
# base as a non-root user; the last stages only choose the command.
#
# Build arguments: PYTHON_IMAGE, a Debian bookworm image with Python 3.11 (python3 and its
# venv module; the official slim image by default, Debian's own python3 works too, as in
# scripts/images.sh), and TORCH_INDEX_URL, the index torch and torchvision come from
# (PyTorch's CPU-only wheels by default; PyPI's Linux wheels bring the CUDA libraries).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# The sources the build needs, gathered in a stage of their own: the build stage takes
# them in one layer.
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY segcore /src/segcore
COPY cuda_ext /src/cuda_ext
COPY services /src/services
COPY configs /src/configs
COPY clients/python /src/clients/python

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# g++ for the compiled ops; Python's headers from Debian when the base has none.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
 && if [ ! -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
      apt-get install -y --no-install-recommends python3-dev=3.11.2-1+b1; \
    fi \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/segstream/bin:$PATH
COPY --from=source /src /src
# One layer. torch's wheels (GBs) are kept in a wheelhouse in a cache mount, shared by
# builds and never in the image: `pip download` fetches only what it lacks.
RUN --mount=type=cache,id=segstream-pip,target=/root/.cache/pip \
    python3 -m venv /opt/segstream \
 && pip install pip==25.3 \
 && pip download --dest /root/.cache/pip/wheelhouse --index-url "${TORCH_INDEX_URL}" \
      torch==2.15.0 torchvision==0.29.2 \
 && pip install --no-index --find-links /root/.cache/pip/wheelhouse torch==2.15.0 torchvision==0.29.2 \
 && pip install /src/clients/python /src ninja==1.13.0 \
 && python -P -m cuda_ext.build --cpu-only

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 segstream \
 && useradd --system --uid 10001 --gid segstream --home-dir /nonexistent --shell /usr/sbin/nologin segstream
COPY --from=build /opt/segstream /opt/segstream
ENV PATH=/opt/segstream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SEGSTREAM_HOST=0.0.0.0 \
    SEGSTREAM_CACHE_DIR=/tmp/segstream
USER 10001:10001
ENTRYPOINT ["segstream"]

FROM runtime AS ingest
EXPOSE 9400
CMD ["ingest"]

FROM runtime AS segment-cpu
EXPOSE 9400
CMD ["segment"]

FROM runtime AS api
EXPOSE 8080
CMD ["api"]
