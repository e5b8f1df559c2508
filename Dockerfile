# envisolation operator image.
#   docker build -t REGISTRY/envisolation:0.1.0 . && docker push REGISTRY/envisolation:0.1.0
# Dependencies come from requirements.lock (exact versions); the package is installed as a
# wheel; the process runs as UID/GID 65532, the IDs the Deployment sets.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.lock \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="envisolation" \
      org.opencontainers.image.description="Keeps a Kubernetes cluster's environments network-isolated" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/envisolation/envisolation"
COPY --from=build /wheels /wheels
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --no-index --find-links=/wheels -r /tmp/requirements.lock \
 && pip install --no-cache-dir --no-index --no-deps --find-links=/wheels envisolation==0.1.0 \
 && rm -rf /wheels /tmp/requirements.lock
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["envisolation", "run"]
CMD ["--log-format", "json", "--liveness", "http://0.0.0.0:8081/healthz", "--metrics-bind", "0.0.0.0:8080"]
