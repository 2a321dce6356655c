# syntax=docker/dockerfile:1
# One image for every socialproof process. The entrypoint is the `socialproof` command; the
# arguments pick the process:
#   docker run IMAGE serve catalog|orders|social|notifier     (HTTP on SOCIALPROOF_<SERVICE>_PORT)
#   docker run IMAGE worker                                   (the stream processor, port 6066)
#   docker run IMAGE replay rebuild … / topics dump …         (topic operations, as Jobs)
# Build: docker build -t socialproof:0.1.0 .   (the tag is the version in pyproject.toml)

# --- build: compile and install the project and its dependencies into /opt/venv -------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# compilers only here, for any dependency without a wheel for this platform
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# dependencies first (a layer that survives code changes), then the code
COPY pyproject.toml README.md ./
RUN mkdir -p socialproof contracts services ops cli \
 && touch socialproof/__init__.py contracts/__init__.py services/__init__.py ops/__init__.py \
      cli/__init__.py \
 && pip install . \
 && pip uninstall -y socialproof
COPY socialproof ./socialproof
COPY contracts ./contracts
COPY services ./services
COPY ops ./ops
COPY cli ./cli
RUN pip install --no-deps . \
 && python -m compileall -q /opt/venv \
 && socialproof --help > /dev/null

# --- runtime: the interpreter, the virtualenv, a non-root user; no compilers, no sources ----
FROM python:3.11.14-slim-bookworm AS runtime

RUN groupadd --system --gid 10001 socialproof \
 && useradd --system --uid 10001 --gid socialproof --no-create-home \
      --home-dir /var/lib/socialproof --shell /usr/sbin/nologin socialproof \
 && mkdir -p /var/lib/socialproof \
 && chown socialproof:socialproof /var/lib/socialproof

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/socialproof \
    SOCIALPROOF_HOST=0.0.0.0

# the worker's Faust data directory is created under the working directory (an emptyDir in
# Kubernetes, where the root filesystem is read-only)
WORKDIR /var/lib/socialproof
USER 10001:10001

EXPOSE 8001 8002 8003 8004 6066
ENTRYPOINT ["socialproof"]
CMD ["--help"]
