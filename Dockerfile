# beamside: one image, no Erlang inside (the agent beams ship in the package).
#   docker build -t beamside:0.1.0 .
#   docker run --rm beamside:0.1.0 --version
# The image runs as an unprivileged user and needs no writable root
# filesystem: mount the config, the cookie (a file) and a spool directory.

FROM python:3.11-slim AS build
# A C compiler for setup.py: the term codec and the line writer compiled with
# mypyc, the scatter extension (several times faster; pure Python without it).
# Debian's current gcc of the base image: pinning a version breaks on its updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY sidecar ./sidecar
# Wheels for beamside and every dependency, so the final stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 beamside \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin beamside
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/beamside-*.whl
USER 10001:10001
EXPOSE 9568 50051
ENTRYPOINT ["beamside"]
CMD ["run", "--config", "/etc/beamside/config.yaml"]
