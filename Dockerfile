# syntax=docker/dockerfile:1
# One image for every Wattwise role: `wattwise operator | extender | agent | simulate | status`.
#
#   docker build -t wattwise:dev .
#   docker run --rm wattwise:dev --help
#
# Stage 1 builds the wheel (and its dependencies' wheels) with the build tools; stage 2 installs the wheels only,
# so no compiler, pip cache or source tree reaches the final image. Runs as uid 65532 (non-root); the chart
# runs the node agent as root only where setting GPU power limits demands it (see the agent DaemonSet).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wattwise ./wattwise
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="wattwise" \
      org.opencontainers.image.description="Power-aware control for GPU inference clusters on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels wattwise \
    && python -m pip uninstall -y pip setuptools wheel \
    && groupadd --gid 65532 wattwise \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wattwise
USER 65532:65532
# The chart mounts an emptyDir on /tmp; the root filesystem can stay read-only.
WORKDIR /tmp
ENTRYPOINT ["wattwise"]
CMD ["--help"]
