# syntax=docker/dockerfile:1
# mlgate: build with `docker build -t mlgate .`, run with
#   docker run -p 8888:8888 -v mlgate-config:/app/config -v mlgate-certs:/app/certs \
#     -e MLGATE_UPSTREAM=http://mlflow:5000 mlgate
# Configure with MLGATE_* variables or /app/config/mlgate.yaml rather than command-line flags: the
# HEALTHCHECK reads the same file and variables to find the port, but cannot see flags.

ARG NODE_VERSION=20

# Compiles src/ to dist/ with the dev dependencies (TypeScript) that the image leaves behind.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies only, installed apart so no build tool reaches the runtime image.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# `mlgate user passwd admin` (the command the first start prints) works in `docker exec`; the
# volume directories belong to the unprivileged user so first start can write htpasswd and certs.
RUN ln -s /app/bin/mlgate.js /usr/local/bin/mlgate \
 && mkdir -p /app/config /app/certs \
 && chown node:node /app/config /app/certs
USER node

# Users and the generated certificate must outlive the container: the admin password is printed
# only once, and clients pin the certificate (MLFLOW_TRACKING_SERVER_CERT_PATH).
VOLUME ["/app/config", "/app/certs"]
EXPOSE 8888

# No curl in the image: node asks /-/healthz (no credentials needed) on the port and scheme the
# configuration says. The self-signed certificate does not name 127.0.0.1 for every setup and a
# configured one may name only the public host, so this local probe does not verify it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "--input-type=module", "-e", "const { loadConfig } = await import('./dist/config/load.js'); const { config } = loadConfig(); const { request } = await import(config.tls.enabled ? 'node:https' : 'node:http'); const host = ['0.0.0.0', '::'].includes(config.host) ? '127.0.0.1' : config.host; request({ host, port: config.port, path: '/-/healthz', rejectUnauthorized: false, timeout: 4000 }, (res) => process.exit(res.statusCode === 200 ? 0 : 1)).on('timeout', () => process.exit(1)).on('error', () => process.exit(1)).end();"]

# docker stop waits 10 s by default, shutdownGrace is 30 s: run with --stop-timeout 35 (or
# stop_grace_period: 35s in compose), or lower MLGATE_SHUTDOWN_GRACE, so requests can finish.
# The young generation every way of starting mlgate uses (npm start, the mlgate command's shebang,
# the systemd unit): docs/performance.md "Memory" has what it changes.
ENTRYPOINT ["node", "--max-semi-space-size=8", "dist/cli/main.js"]
CMD ["serve"]
