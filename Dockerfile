# gridshift image: one image, one `gridshift` command; each container runs one subcommand
# (`run`, `extender`, `agent`). Build: docker build -t ghcr.io/gridshift/gridshift:0.1.0 .
# Stage 1 builds gridshift's own wheel; stage 2 installs the runtime dependencies at the exact,
# hash-checked versions of requirements.lock (no dev tools), then that wheel without
# dependencies, on a clean slim base: no compilers, no pip cache, runs as UID 65532 with a
# read-only root filesystem in the manifests.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY forecasts ./forecasts
COPY scaler ./scaler
COPY extender ./extender
COPY config ./config
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /src/requirements.lock /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN python -m pip install --require-hashes -r /tmp/requirements.lock \
    && python -m pip install --no-deps --no-index /wheels/gridshift-*.whl \
    && rm -rf /wheels /tmp/requirements.lock \
    && groupadd --gid 65532 gridshift \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin gridshift
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 6443 6000 8443 9402
ENTRYPOINT ["gridshift"]
CMD ["run"]
