"""A literal password in a SQL source's URL (issue 14 item 11).

The run config travels everywhere: every task's command line and log, the run parameters
compiled into or submitted with a pipeline, the model card, MLflow. So a literal password
is moved out of it when it is read (into an environment variable of that process, which
local tasks inherit), the user is told to use ``${VAR}`` and a Secret, and it is masked
wherever a URL is printed. Tested against a real PostgreSQL that checks the password.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from autokfp.config import (
    load_config,
    mask_url_password,
    move_literal_passwords,
    parse_config,
    password_env_name,
)
from autokfp.edge.scheduling import check_cluster_config
from autokfp.errors import ConfigError
from autokfp.pipelines import ClusterOptions, build_autonomous_training

ROOT = Path(__file__).resolve().parents[2]
CLI = "from autokfp.edge.cli import app; app()"


def _files_holding(folder: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_urls_are_masked_and_literal_passwords_moved(monkeypatch) -> None:
    env = password_env_name("crm-db.eu")
    assert env == "AUTOKFP_SQL_PASSWORD_CRM_DB_EU"
    monkeypatch.setenv(env, "placeholder")  # restored (unset) after the test
    monkeypatch.setenv(env + "_QUERY", "placeholder")

    # kept as written (URL-encoded): expand_env puts back exactly what was there
    url, moved = move_literal_passwords("postgresql://bob:p%40ss@db:5432/crm?sslmode=require",
                                        env)
    assert url == f"postgresql://bob:${{{env}}}@db:5432/crm?sslmode=require"
    assert moved == [env] and os.environ[env] == "p%40ss"
    url, moved = move_literal_passwords("mssql+pyodbc://db/crm?UID=bob&PWD=hunter22", env)
    assert url == f"mssql+pyodbc://db/crm?UID=bob&PWD=${{{env}_QUERY}}"
    assert os.environ[env + "_QUERY"] == "hunter22"
    for untouched in ("postgresql://bob:${DB_PASSWORD}@db/crm", "postgresql://bob@db/crm",
                      "sqlite:////data/x.db", "postgresql://db:5432/crm", "sqlite:///${HOME_DB}"):
        assert move_literal_passwords(untouched, env) == (untouched, [])
        assert mask_url_password(untouched) == untouched

    assert mask_url_password("postgresql://bob:hunter22@db/crm?password=x2&a=1") == (
        "postgresql://bob:***@db/crm?password=***&a=1")
    assert mask_url_password("http://user:tok@mlflow:5000") == "http://user:***@mlflow:5000"


def test_a_literal_password_reaches_the_database_and_nothing_else(postgres_server, tmp_path,
                                                                   monkeypatch, caplog) -> None:
    secret = postgres_server.password
    # the server is shared by the session: another test may have made its own crm already
    postgres_server.run("postgres", "DROP DATABASE IF EXISTS crm", "CREATE DATABASE crm")
    postgres_server.run(
        "crm", "CREATE TABLE customers (customer_id int, plan text, churned int)",
        "INSERT INTO customers SELECT g, CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'basic' END, "
        "g % 2 FROM generate_series(1, 150) AS g")
    env = password_env_name("crm")
    monkeypatch.setenv(env, "placeholder")
    monkeypatch.delenv(env)  # the test process never had it; unset again afterwards
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "churn-sql",
        "sources": [{"name": "crm", "kind": "sql", "url": postgres_server.url("crm")}],
        "training": {"dataset": "crm/customers", "target": "churned"},
    }))

    # the CLI warns, moves the password out of the config, and the crawl still connects
    home = tmp_path / "home"
    child_env = {k: v for k, v in os.environ.items() if k != env}
    done = subprocess.run([sys.executable, "-c", CLI, "discover", str(config_path), "--home",
                           str(home), "--json"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**child_env, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "literal password" in done.stderr and env in done.stderr
    assert "${VAR}" in done.stderr and "Kubernetes Secret" in done.stderr
    report = yaml.safe_load(done.stdout)
    (dataset,) = [d for d in report["datasets"] if d["dataset_id"] == "crm/customers"]
    assert dataset["status"] != "failed" and dataset["rows"] == 150, dataset
    assert secret not in done.stdout + done.stderr
    assert home.is_dir() and _files_holding(home, secret) == []

    # the config a pipeline receives, and the compiled YAML, hold only the reference
    caplog.set_level(logging.WARNING, logger="autokfp.config")
    config = load_config(config_path)
    assert os.environ[env] == secret  # for this process and the tasks it starts
    assert secret not in caplog.text and env in caplog.text
    assert secret not in yaml.safe_dump(config.to_dict())
    assert config.sources[0].url == postgres_server.url("crm", password=f"${{{env}}}")
    assert parse_config(config.to_dict()).sources[0].url == config.sources[0].url
    compiled = tmp_path / "training.yaml"
    compiler.Compiler().compile(build_autonomous_training(ClusterOptions()), str(compiled),
                                pipeline_parameters={"config": config.to_dict()})
    text = compiled.read_text()
    assert f"${{{env}}}" in text and secret not in text

    # a cluster run cannot receive it: submitting is refused, saying what to do
    with pytest.raises(ConfigError, match=r"sources 'crm'.*literal password.*Kubernetes Secret"):
        check_cluster_config(config, allow_local_paths=True)


def test_a_url_wholly_in_an_unset_or_bad_variable_is_a_clear_error_naming_it(
        tmp_path, monkeypatch) -> None:
    """``url: ${VAR}``: unset, the error names the variable and says to set it; a value that
    is no SQLAlchemy URL is named the same way without showing it (it holds the password);
    a SQLite URL in it is read as that URL (platform, recipe, the second pass's token)."""
    import sqlite3

    from autokfp.catalog.ingest import recipe_source
    from autokfp.catalog.sources.sql import ddl_version, sql_platform

    name = "AUTOKFP_TEST_WHOLE_URL"
    monkeypatch.delenv(name, raising=False)
    config = parse_config({"name": "w", "sources": [{"name": "crm", "kind": "sql",
                                                     "url": f"${{{name}}}"}],
                           "training": {"dataset": "crm/customers", "target": "churned"}})
    source = config.sources[0]
    with pytest.raises(ConfigError, match=rf"{name} \(the url of SQL source 'crm'\) is not set"):
        sql_platform(source.url, source.name)
    with pytest.raises(ConfigError, match=f"{name}.*is not set; set it"):
        recipe_source(source)
    assert ddl_version(source) is None  # no token: DataHub's source runs and says why
    secret = "s3cret-hunter22"
    monkeypatch.setenv(name, f"postgresql//crm:{secret}@db/crm")  # '://' mistyped
    with pytest.raises(ConfigError, match=f"{name} .*does not hold a SQLAlchemy URL") as bad:
        recipe_source(source)
    assert secret not in str(bad.value) and bad.value.__cause__ is None
    assert bad.value.__context__ is None or secret not in str(bad.value.__context__)
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE customers (id integer, churned integer)")
    monkeypatch.setenv(name, f"sqlite:///{db}")
    assert sql_platform(source.url) == "sqlite"
    generated = recipe_source(source)
    assert generated["type"] == "sqlalchemy" and generated["config"]["platform"] == "sqlite"
    assert generated["config"]["connect_uri"] == f"${{{name}}}"
    token = ddl_version(source)
    assert token is not None and token[1] == {"customers"}
    # written with spaces around it, as YAML keeps them in a quoted value: the same URL,
    # which the crawl's engine opens (SQLAlchemy parses no leading space)
    spaced = parse_config({"name": "w", "sources": [{"name": "crm", "kind": "sql",
                                                     "url": f" ${{{name}}} "}],
                           "training": {"dataset": "crm/customers", "target": "churned"}})
    assert spaced.sources[0].url == f"${{{name}}}"
    from autokfp.catalog.sources.sql import _engine

    engine = _engine(spaced.sources[0])
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM customers").scalar() == 0
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match=r"or \$\{VAR\}"):
        parse_config({"name": "w", "sources": [{"name": "crm", "kind": "sql", "url": "crm.db"}],
                      "training": {"dataset": "crm/customers", "target": "churned"}})
