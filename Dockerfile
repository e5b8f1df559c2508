# syntax=docker/dockerfile:1
# envisolation operator image. Build: docker build -t REGISTRY/envisolation:0.1.0 .
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m build --wheel --outdir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/envisolation-*.whl

FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="envisolation" \
      org.opencontainers.image.description="Keeps a cluster's environments network-isolated" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels envisolation \
 && rm -rf /wheels
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["envisolation", "run"]
CMD ["--log-format", "json", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-bind", "0.0.0.0:9090"]
