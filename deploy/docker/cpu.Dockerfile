# syntax=docker/dockerfile:1.7
# The CPU images: the API and the ingest worker (and a segment worker for CPU nodes):
#   docker build -f deploy/docker/cpu.Dockerfile --target api -t segstream-api:0.1.0 .
#   docker build -f deploy/docker/cpu.Dockerfile --target ingest -t segstream-ingest:0.1.0 .
#   docker build -f deploy/docker/cpu.Dockerfile --target segment-cpu -t segstream-segment-cpu:0.1.0 .
# The build stage makes a virtual environment with the project and its compiled ops (CPU
# kernels; the CUDA image is segment.Dockerfile); the runtime stage copies it onto a slim
# base as a non-root user; the last stages only choose the command.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/segstream \
 && /opt/segstream/bin/pip install --no-cache-dir pip==25.3 \
 && /opt/segstream/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
      torch==2.15.0 torchvision==0.29.2
COPY pyproject.toml README.md ./
COPY segcore ./segcore
COPY cuda_ext ./cuda_ext
COPY services ./services
COPY configs ./configs
RUN /opt/segstream/bin/pip install --no-cache-dir . ninja==1.13.0 \
 && /opt/segstream/bin/python -m cuda_ext.build --cpu-only

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
