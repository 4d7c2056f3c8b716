# Stage 2 (deep worker): CUDA PyTorch image, fp16 on the GPU.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY models ./models
COPY schemas ./schemas
RUN pip install .
# A fresh named volume mounted at /artifacts takes this directory's owner: writable by the user.
RUN mkdir -p /artifacts && chown 65534:65534 /artifacts
USER 65534
ENTRYPOINT ["fraudstream"]
CMD ["deep"]
