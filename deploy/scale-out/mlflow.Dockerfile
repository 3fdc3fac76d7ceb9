# The official MLflow image with the PostgreSQL driver, which it does not ship: `mlflow server
# --backend-store-uri postgresql://...` imports psycopg2 through SQLAlchemy. The binary wheel needs
# no compiler or libpq headers in the image. (The documented alternative is any image that has
# mlflow and psycopg2 installed, e.g. `pip install mlflow psycopg2-binary` on python:3.11-slim.)
ARG MLFLOW_VERSION=v2.17.2
FROM ghcr.io/mlflow/mlflow:${MLFLOW_VERSION}
RUN pip install --no-cache-dir psycopg2-binary==2.9.10
