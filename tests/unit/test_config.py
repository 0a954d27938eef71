"""Settings: layering (defaults < file < environment < flags), conversion, validation, state dir.

Real files in tmp_path, the real environment (through monkeypatch) and the real TOML parser.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from ollagraph.agents.config import (
    ALL_TOOLS,
    DEFAULT_MODEL,
    Settings,
    field_descriptions,
    load_settings,
    normalize_host,
    read_env,
)
from ollagraph.agents.errors import ConfigError, StateDirError
from ollagraph.agents.paths import state_dir, state_path

FILE_VALUES = {
    "model": "file-model",
    "max_steps": 5,
    "temperature": 0.25,
    "tools": ("sql_query",),
    "ollama_host": "http://file-host:1",
    "max_rows": 7,
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "config.toml",
        'model = "file-model"\n'
        "max_steps = 5\n"
        "temperature = 0.25\n"
        'tools = ["sql_query"]\n'
        'ollama_host = "http://file-host:1"\n'
        "max_rows = 7\n",
    )


# --- precedence -------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.model == DEFAULT_MODEL
    assert settings.tools == ALL_TOOLS
    assert (settings.max_steps, settings.max_rows, settings.temperature) == (8, 20, 0.0)


def test_config_file_wins_over_defaults_field_by_field(config_file: Path) -> None:
    settings = load_settings(config_file, env={})
    for name, value in FILE_VALUES.items():
        assert getattr(settings, name) == value, name
    # fields the file does not name keep their defaults
    assert settings.tool_timeout == Settings().tool_timeout
    assert settings.chunk_size == Settings().chunk_size


def test_environment_wins_over_config_file_field_by_field(config_file: Path) -> None:
    env = {
        "OLLAGRAPH_MODEL": "env-model",
        "OLLAGRAPH_MAX_STEPS": "6",
        "OLLAGRAPH_TEMPERATURE": "0.5",
        "OLLAGRAPH_TOOLS": "web_search",
        "OLLAMA_HOST": "env-host:2",
    }
    settings = load_settings(config_file, env=env)
    assert settings.model == "env-model"
    assert settings.max_steps == 6
    assert settings.temperature == 0.5
    assert settings.tools == ("web_search",)
    assert settings.ollama_host == "env-host:2"
    assert settings.max_rows == 7  # not in the environment: the file's value stays


def test_ollagraph_ollama_host_wins_over_ollama_host() -> None:
    env = {"OLLAMA_HOST": "plain:1", "OLLAGRAPH_OLLAMA_HOST": "specific:2"}
    assert load_settings(env=env).ollama_host == "specific:2"


def test_overrides_win_over_environment_and_none_means_not_given(config_file: Path) -> None:
    env = {"OLLAGRAPH_MODEL": "env-model", "OLLAGRAPH_MAX_STEPS": "6", "OLLAMA_HOST": "env:2"}
    overrides = {"model": "flag-model", "max_steps": 3, "ollama_host": None, "temperature": None}
    settings = load_settings(config_file, overrides=overrides, env=env)
    assert settings.model == "flag-model"
    assert settings.max_steps == 3
    assert settings.ollama_host == "env:2"  # None override: the environment's value stays
    assert settings.temperature == 0.25  # None override, nothing in env: the file's value stays


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAGRAPH_MODEL", "from-os-environ")
    monkeypatch.setenv("OLLAGRAPH_MAX_ROWS", "3")
    settings = load_settings()
    assert (settings.model, settings.max_rows) == ("from-os-environ", 3)


# --- environment conversion --------------------------------------------------------------------


def test_environment_values_are_converted_to_the_field_types() -> None:
    values = read_env(
        {
            "OLLAGRAPH_MAX_STEPS": "12",
            "OLLAGRAPH_TEMPERATURE": "0.7",
            "OLLAGRAPH_TOOL_TIMEOUT": "2",
            "OLLAGRAPH_TOOLS": " sql_query , web_search ,",
            "OLLAGRAPH_DB": "~/shop.duckdb",
        }
    )
    assert values == {
        "max_steps": 12,
        "temperature": 0.7,
        "tool_timeout": 2.0,
        "tools": ("sql_query", "web_search"),
        "db": "~/shop.duckdb",
    }
    assert type(values["max_steps"]) is int and type(values["tool_timeout"]) is float


def test_empty_environment_variables_are_ignored() -> None:
    assert read_env({"OLLAGRAPH_MODEL": "", "OLLAMA_HOST": "", "OLLAGRAPH_MAX_STEPS": ""}) == {}


def test_unrelated_ollagraph_variables_are_not_settings() -> None:
    assert read_env({"OLLAGRAPH_HOME": "/x", "OLLAGRAPH_CONFIG": "/y.toml"}) == {}


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OLLAGRAPH_MAX_STEPS", "lots"),
        ("OLLAGRAPH_MAX_STEPS", "3.5"),
        ("OLLAGRAPH_TEMPERATURE", "warm"),
    ],
)
def test_bad_environment_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={var: value})
    assert f"${var}" in str(info.value)
    assert repr(value) in str(info.value)
    assert info.value.exit_code == 2


def test_environment_value_that_fails_validation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sqll"):
        load_settings(env={"OLLAGRAPH_TOOLS": "sqll"})


# --- the config file ---------------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", 'model = "m"\nmax_steps 3\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    text = str(info.value)
    assert str(path) in text and "not valid TOML" in text
    assert "line 2" in text


def test_unknown_key_lists_the_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'modle = "m"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    text = str(info.value)
    assert "modle" in text and str(path) in text
    assert info.value.hint is not None
    for f in fields(Settings):
        assert f.name in info.value.hint


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ('max_steps = "x"', "max_steps"),
        ("max_steps = 2.5", "max_steps"),
        ("max_steps = true", "max_steps"),
        ('temperature = "hot"', "temperature"),
        ("temperature = false", "temperature"),
        ("tools = [1, 2]", "tools"),
        ("tools = 3", "tools"),
        ("model = [1]", "model"),
        ("model = true", "model"),
    ],
)
def test_wrong_type_in_the_file_is_a_config_error(tmp_path: Path, line: str, name: str) -> None:
    path = write(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert f"`{name}`" in str(info.value) and str(path) in str(info.value)


def test_file_values_of_a_compatible_type_are_converted(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'max_steps = 4.0\ntemperature = 1\ntools = "web_search"\n')
    settings = load_settings(path, env={})
    assert settings.max_steps == 4 and type(settings.max_steps) is int
    assert settings.temperature == 1.0 and type(settings.temperature) is float
    assert settings.tools == ("web_search",)


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, env={})


def test_config_file_that_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_ollagraph_config_picks_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    monkeypatch.setenv("OLLAGRAPH_CONFIG", str(config_file))
    assert load_settings(env={}).model == "file-model"
    # a file named on the command line wins over $OLLAGRAPH_CONFIG
    other = write(tmp_path / "other.toml", 'model = "cli-file"\n')
    assert load_settings(other, env={}).model == "cli-file"
    # a missing $OLLAGRAPH_CONFIG file is an error, not silently the defaults
    monkeypatch.setenv("OLLAGRAPH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings(env={})


def test_default_file_in_the_state_dir_is_read_when_present(isolated_state: Path) -> None:
    assert load_settings(env={}) == Settings()  # no file yet: defaults, no error
    write(isolated_state / "config.toml", 'model = "home-model"\nmax_rows = 9\n')
    settings = load_settings(env={})
    assert (settings.model, settings.max_rows) == ("home-model", 9)


def test_invalid_default_file_is_reported(isolated_state: Path) -> None:
    write(isolated_state / "config.toml", "max_rows = \n")
    with pytest.raises(ConfigError, match=r"config\.toml"):
        load_settings(env={})


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"tools": ("sql_query", "sqll")}, "sqll"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 101}, "at most 100"),
        ({"max_rows": 0}, "max_rows"),
        ({"max_tool_output": 0}, "max_tool_output"),
        ({"chunk_size": 64, "chunk_overlap": 64}, "chunk_overlap"),
        ({"chunk_size": 64, "chunk_overlap": 100}, "chunk_overlap"),
        ({"chunk_overlap": -1}, "chunk_overlap"),
        ({"temperature": -0.1}, "temperature"),
    ],
)
def test_validation_rejects_bad_values(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings(**changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=needle):
        load_settings(overrides=changes, env={})


def test_validation_accepts_the_edges() -> None:
    settings = Settings(max_steps=100, chunk_size=64, chunk_overlap=63, temperature=0.0)
    assert (settings.max_steps, settings.chunk_overlap) == (100, 63)
    assert Settings(max_steps=1, tools=()).tools == ()
    assert Settings(tools=["web_search"]).tools == ("web_search",)  # type: ignore[arg-type]


def test_unknown_tool_error_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(tools=("sqll",))
    for name in ALL_TOOLS:
        assert name in str(info.value)


def test_with_overrides_ignores_none_and_validates() -> None:
    base = Settings(model="a")
    assert base.with_overrides(model=None, max_steps=3) == Settings(model="a", max_steps=3)
    with pytest.raises(ConfigError):
        base.with_overrides(max_steps=0)


# --- the model server --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("   ", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        (":1234", "http://127.0.0.1:1234"),
        ("host", "http://host:11434"),
        ("host:1234", "http://host:1234"),
        ("https://x", "https://x:443"),
        ("http://a:1/", "http://a:1"),
        ("http://host/ollama", "http://host:11434/ollama"),
        ("https://x.example/api/v1/", "https://x.example:443/api/v1"),
        ("[::1]", "http://[::1]:11434"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("https://[fe80::1]/ollama", "https://[fe80::1]:443/ollama"),
    ],
)
def test_normalize_host(value: str, url: str) -> None:
    assert normalize_host(value) == url


def test_host_uses_ollama_host_when_the_setting_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9999")
    assert Settings().host == "http://gpu-box:9999"
    assert Settings(ollama_host="https://other").host == "https://other:443"
    monkeypatch.delenv("OLLAMA_HOST")
    assert Settings().host == "http://127.0.0.1:11434"


# --- descriptions ------------------------------------------------------------------------------


def test_every_field_has_a_description() -> None:
    descriptions = field_descriptions()
    assert list(descriptions) == [f.name for f in fields(Settings)]
    for name, text in descriptions.items():
        assert text.strip(), f"`{name}` has no description"
        assert text.strip().endswith("."), name


# --- the state directory -----------------------------------------------------------------------


def test_state_dir_honours_ollagraph_home(isolated_state: Path) -> None:
    assert not isolated_state.exists()
    assert state_dir(create=False) == isolated_state
    assert not isolated_state.exists()  # create=False creates nothing
    assert state_dir() == isolated_state and isolated_state.is_dir()
    path = state_path("sample", "x.duckdb")
    assert path == isolated_state / "sample" / "x.duckdb" and path.parent.is_dir()


def test_state_dir_expands_the_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAGRAPH_HOME", "~/og")
    assert state_dir() == tmp_path / "og"


def test_state_dir_falls_back_to_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OLLAGRAPH_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert state_dir(create=False) == tmp_path / "xdg" / "ollagraph"


def test_state_dir_under_a_regular_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = write(tmp_path / "a-file", "not a folder")
    monkeypatch.setenv("OLLAGRAPH_HOME", str(blocker / "home"))
    with pytest.raises(StateDirError) as info:
        state_dir()
    text = str(info.value)
    assert str(blocker / "home") in text and "Cannot create the state directory" in text
    assert "OLLAGRAPH_HOME" in text  # the hint says what to do
    assert "Traceback" not in text and "Errno" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_state_dir_without_write_permission_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "ro"
    home.mkdir(mode=0o500)
    monkeypatch.setenv("OLLAGRAPH_HOME", str(home))
    try:
        with pytest.raises(StateDirError, match="not writable"):
            state_dir()
    finally:
        home.chmod(0o700)
