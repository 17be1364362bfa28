"""Configuration: defaults -> instance file -> environment -> test overrides, validated at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from companion import ROOT, create_app
from companion.cli import main
from companion.config import SETTINGS, ConfigError, load

from .conftest import TEST_KEYS

SECRET = "a-secret-key-that-is-long-enough-for-the-check-0123"


def env(**values: str) -> dict[str, str]:
    return {"COMPANION_SECRET_KEY": SECRET, **{f"COMPANION_{k}": v for k, v in values.items()}}


def write_toml(folder: Path, text: str) -> None:
    (folder / "companion.toml").write_text(text, encoding="utf-8")


def problems_of(folder: Path, environ: dict[str, str], **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(folder, environ=environ, overrides=overrides or None)
    return info.value.problems


def test_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ=env())
    assert cfg["HOST"] == "127.0.0.1"
    assert cfg["PORT"] == 5000
    assert cfg["BASE_URL"] == "http://127.0.0.1:5000"
    assert cfg["DATABASE_URL"] == f"sqlite:///{tmp_path / 'companion.db'}"
    assert cfg["STORAGE_DIR"] == str(tmp_path / "recordings")
    assert cfg["SECURE_COOKIES"] is False
    assert cfg["ZOOM_MODE"] == "sandbox"
    assert cfg["SESSION_IDLE_MINUTES"] == 30
    assert cfg["LOGIN_MAX_FAILURES"] == 5
    assert cfg["DEFAULT_TIMEZONE"] == "Europe/London"
    # Every setting of the table is there, coerced.
    assert {s.name for s in SETTINGS} <= set(cfg)


def test_base_url_follows_host_and_port(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ=env(HOST="0.0.0.0", PORT="8080"))
    assert cfg["BASE_URL"] == "http://0.0.0.0:8080"


def test_instance_file_is_a_layer_under_the_environment(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        f'secret_key = "{SECRET}"\nport = 6001\nlog_level = "warning"\nsecure_cookies = true\n',
    )
    cfg = load(tmp_path, environ={})
    assert cfg["PORT"] == 6001
    assert cfg["LOG_LEVEL"] == "warning"
    assert cfg["SECURE_COOKIES"] is True
    assert cfg["SECRET_KEY"] == SECRET

    cfg = load(tmp_path, environ={"COMPANION_PORT": "7002"})
    assert cfg["PORT"] == 7002, "the environment overrides the instance file"
    assert cfg["LOG_LEVEL"] == "warning", "what the environment leaves alone stays"

    cfg = load(tmp_path, environ={"COMPANION_PORT": "7002"}, overrides={"PORT": 7003})
    assert cfg["PORT"] == 7003, "test overrides come last"


def test_empty_environment_variable_means_default(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ=env(PORT="", LOG_LEVEL=""))
    assert cfg["PORT"] == 5000
    assert cfg["LOG_LEVEL"] == "info"


def test_https_base_url_turns_on_secure_cookies(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ=env(BASE_URL="https://classes.example.org/"))
    assert cfg["BASE_URL"] == "https://classes.example.org"
    assert cfg["SECURE_COOKIES"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p@127.0.0.1:5432/c", "postgresql+psycopg://u:p@127.0.0.1:5432/c"),
        ("postgres://u:p@127.0.0.1/c", "postgresql+psycopg://u:p@127.0.0.1/c"),
        ("postgresql+psycopg://u@127.0.0.1/c", "postgresql+psycopg://u@127.0.0.1/c"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_forms(tmp_path: Path, raw: str, expected: str) -> None:
    assert load(tmp_path, environ=env(DATABASE_URL=raw))["DATABASE_URL"] == expected


def test_test_overrides_are_validated_and_extras_pass_through(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ=env(), overrides={"TESTING": True, "PORT": "5050"})
    assert cfg["TESTING"] is True
    assert cfg["PORT"] == 5050
    assert problems_of(tmp_path, env(), PORT="many") == [
        "COMPANION_PORT must be a whole number, got 'many'"
    ]


def test_every_malformed_value_is_named_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        {
            "COMPANION_SECRET_KEY": "short",
            "COMPANION_PORT": "eighty",
            "COMPANION_SMTP_PORT": "70000",
            "COMPANION_BASE_URL": "ftp://classes.example.org",
            "COMPANION_SECURE_COOKIES": "maybe",
            "COMPANION_DEFAULT_TIMEZONE": "Mars/Olympus_Mons",
            "COMPANION_LOG_LEVEL": "loud",
            "COMPANION_DATABASE_URL": "mysql://127.0.0.1/companion",
            "COMPANION_MAIL_FROM": "nobody",
        },
    )
    text = "\n".join(problems)
    for name in (
        "SECRET_KEY",
        "PORT",
        "SMTP_PORT",
        "BASE_URL",
        "SECURE_COOKIES",
        "DEFAULT_TIMEZONE",
        "LOG_LEVEL",
        "DATABASE_URL",
        "MAIL_FROM",
    ):
        assert any(p.startswith(f"COMPANION_{name} ") for p in problems), name
    assert len(problems) == 9
    assert "at least 32 characters" in text
    assert "whole number, got 'eighty'" in text
    assert "between 1 and 65535, got 70000" in text
    assert "http(s) URL" in text
    assert "true or false, got 'maybe'" in text
    assert "not a known time zone: 'Mars/Olympus_Mons'" in text
    # The bad secret itself is never echoed back.
    assert "short" not in text.replace("COMPANION_", "")


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "../../etc/passwd", "Europe/"])
def test_unknown_time_zone(tmp_path: Path, zone: str) -> None:
    assert problems_of(tmp_path, env(DEFAULT_TIMEZONE=zone)) == [
        f"COMPANION_DEFAULT_TIMEZONE is not a known time zone: {zone!r}"
    ]


def test_missing_secret_key(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {})
    assert len(problems) == 1
    assert problems[0].startswith("COMPANION_SECRET_KEY is required")


def test_unknown_key_in_instance_file_is_named_with_other_problems(tmp_path: Path) -> None:
    write_toml(tmp_path, f'secret_key = "{SECRET}"\nprot = 5001\ndatabase = "x"\n')
    problems = problems_of(tmp_path, {"COMPANION_PORT": "x"})
    assert "companion.toml: unknown setting 'prot'" in problems
    assert "companion.toml: unknown setting 'database'" in problems
    assert "COMPANION_PORT must be a whole number, got 'x'" in problems
    # The known settings of the file still count: no spurious "secret key is required".
    assert not any("SECRET_KEY" in p for p in problems)


def test_invalid_toml(tmp_path: Path) -> None:
    write_toml(tmp_path, "port = = 5\n")
    problems = problems_of(tmp_path, env())
    assert len(problems) == 1
    assert problems[0].startswith("companion.toml: not valid TOML")


def test_malformed_value_in_instance_file(tmp_path: Path) -> None:
    write_toml(tmp_path, f'secret_key = "{SECRET}"\nport = "high"\nsecure_cookies = "perhaps"\n')
    problems = problems_of(tmp_path, {})
    assert "COMPANION_PORT must be a whole number, got 'high'" in problems
    assert "COMPANION_SECURE_COOKIES must be true or false, got 'perhaps'" in problems


@pytest.mark.parametrize(
    "given",
    [
        {"ZOOM_ACCOUNT_ID": "acc"},
        {"ZOOM_ACCOUNT_ID": "acc", "ZOOM_CLIENT_ID": "cid"},
        {"ZOOM_CLIENT_SECRET": "s3cr3t-value"},
    ],
)
def test_incomplete_zoom_credentials(tmp_path: Path, given: dict[str, str]) -> None:
    problems = problems_of(tmp_path, env(**given))
    assert len(problems) == 1
    assert "Zoom credentials are incomplete" in problems[0]
    assert "s3cr3t-value" not in problems[0]


def test_zoom_credentials_need_the_webhook_secret(tmp_path: Path) -> None:
    zoom = {"ZOOM_ACCOUNT_ID": "a", "ZOOM_CLIENT_ID": "b", "ZOOM_CLIENT_SECRET": "c"}
    problems = problems_of(tmp_path, env(**zoom))
    assert problems == ["COMPANION_ZOOM_WEBHOOK_SECRET is required with real Zoom credentials"]
    cfg = load(tmp_path, environ=env(**zoom, ZOOM_WEBHOOK_SECRET="w"))
    assert cfg["ZOOM_MODE"] == "zoom"


def test_create_app_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path, environ=env(PORT="0"))
    assert "COMPANION_PORT must be between 1 and 65535, got 0" in str(info.value)


def test_create_app_reads_instance_folder_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = "".join(f'{name.lower()} = "{value}"\n' for name, value in TEST_KEYS.items())
    write_toml(tmp_path, f'secret_key = "{SECRET}"\nport = 6123\n{keys}')
    monkeypatch.setenv("COMPANION_INSTANCE_PATH", str(tmp_path))
    app = create_app(environ={})
    assert app.config["PORT"] == 6123
    assert Path(app.instance_path) == tmp_path.resolve()


def test_cli_explains_bad_configuration_and_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["routes"],
        env={
            "COMPANION_INSTANCE_PATH": str(tmp_path),
            "COMPANION_SECRET_KEY": SECRET,
            "COMPANION_PORT": "eighty",
            "COMPANION_SESSION_IDLE_MINUTES": "-5",
        },
    )
    assert result.exit_code == 2
    assert "companion cannot start" in result.stderr
    assert "COMPANION_PORT must be a whole number, got 'eighty'" in result.stderr
    assert "COMPANION_SESSION_IDLE_MINUTES must be between" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table_rows = {
        line.split("|")[1].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `COMPANION_")
    }
    missing = [s.env for s in SETTINGS if s.env not in table_rows]
    assert not missing, f"README's configuration table lacks {missing}"
    unknown = sorted(table_rows - {s.env for s in SETTINGS})
    assert not unknown, f"README's configuration table lists settings that do not exist: {unknown}"
