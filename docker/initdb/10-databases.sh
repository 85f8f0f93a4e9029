#!/bin/sh
# First start of the postgres container only: Airflow's and MLflow's users and databases, from docker/.env.
# They never share a database: both keep an alembic_version table.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_user="$AIRFLOW_DB_USER" -v airflow_password="$AIRFLOW_DB_PASSWORD" -v airflow_db="$AIRFLOW_DB_NAME" \
  -v mlflow_user="$MLFLOW_DB_USER" -v mlflow_password="$MLFLOW_DB_PASSWORD" -v mlflow_db="$MLFLOW_DB_NAME" <<'SQL'
CREATE USER :"airflow_user" WITH PASSWORD :'airflow_password';
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
CREATE USER :"mlflow_user" WITH PASSWORD :'mlflow_password';
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
SQL
