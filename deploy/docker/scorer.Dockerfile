# Stage 1 (scorer), label consumer and simulator: a slim CPU image.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY models ./models
COPY schemas ./schemas
# CPU-only torch keeps the image small; the scorer itself never touches torch at run time.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch \
 && pip install .
# The compiled batch kernel (models/kernels.py) is built for the host's CPU at a service's first
# start (about a second, before it consumes) and cached where the root file system is read-only.
ENV NUMBA_CACHE_DIR=/tmp/numba
# A fresh named volume mounted at /artifacts takes this directory's owner: writable by the user.
RUN mkdir -p /artifacts && chown 65534:65534 /artifacts
USER 65534
ENTRYPOINT ["fraudstream"]
CMD ["score"]
