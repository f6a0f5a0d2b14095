# syntax=docker/dockerfile:1
# account-monitor: multi-stage build, slim runtime, non-root, state on a volume.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/account-monitor
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN /opt/account-monitor/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="account-monitor" \
      org.opencontainers.image.description="Pages on-call when a protected account vanishes"
RUN groupadd --system --gid 10001 accmon \
 && useradd --system --uid 10001 --gid accmon --home-dir /var/lib/account-monitor \
            --shell /usr/sbin/nologin accmon \
 && mkdir -p /var/lib/account-monitor /etc/account-monitor \
 && chown accmon:accmon /var/lib/account-monitor
COPY --from=build /opt/account-monitor /opt/account-monitor
COPY config/monitor.yaml /etc/account-monitor/monitor.yaml
ENV PATH=/opt/account-monitor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/account-monitor
VOLUME ["/var/lib/account-monitor"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["account-monitor", "run"]
CMD ["--config", "/etc/account-monitor/monitor.yaml", "--state", "/var/lib/account-monitor/monitor.db", "--host", "0.0.0.0", "--log-format", "json"]
