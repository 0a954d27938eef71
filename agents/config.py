"""One typed settings object, loaded one way: defaults < config file < environment < CLI flags.

`Settings` is also the graph's runtime context (`context_schema`), so LangGraph Studio shows and
edits the same fields the CLI sets. The config file is TOML (`$OLLAGRAPH_HOME/config.toml`, or the
path in `OLLAGRAPH_CONFIG` or `--config`) with the field names as keys. Every field can be set from
the environment as `OLLAGRAPH_<FIELD>` (upper case); the model server also honours `OLLAMA_HOST`.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from ollagraph.agents.errors import ConfigError

TEXT_TOOLS: tuple[str, ...] = ("sql_query", "search_documents", "web_search")
IMAGE_TOOLS: tuple[str, ...] = (
    "caption_image",
    "generate_image",
    "upscale_image",
    "embed_faces",
    "find_similar_faces",
)
ALL_TOOLS: tuple[str, ...] = TEXT_TOOLS + IMAGE_TOOLS
DEFAULT_MODEL = "smollm2:135m"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
TASKS: tuple[str, ...] = ("caption", "generate", "upscale", "faces")
TASK_KEYS: tuple[str, ...] = (
    "model",
    "device",
    "device_mode",
    "precision",
    "quantization",
    "batch_size",
    "low_cpu_mem_usage",
)


def _doc(text: str, **kwargs: Any) -> Any:
    """Declare a dataclass field with a description (shown by Studio and `agent config`)."""
    return field(metadata={"description": text}, **kwargs)


@dataclass(kw_only=True)
class Settings:
    """Everything a run can be configured with. Each field says what it does."""

    model: str = _doc(
        "Ollama model that writes the plan, chooses tool calls and answers.", default=DEFAULT_MODEL
    )
    ollama_host: str = _doc(
        "URL of the Ollama server. Empty: $OLLAMA_HOST, else http://127.0.0.1:11434.", default=""
    )
    backend: str = _doc(
        "Model server kind: 'ollama' (Ollama or the embedded engine at ollama_host) or 'openai' "
        "(any OpenAI-compatible chat endpoint: vLLM, TGI, llama.cpp server, LM Studio; `model` "
        "is a name its GET /models lists). An OpenAI-compatible server is used as is: never "
        "started, stopped or pulled onto; with tool_strategy 'auto' it gets constrained JSON "
        "(`response_format` json_schema), since the OpenAI API reports no capabilities: set "
        "tool_strategy = 'native' for a model and server with reliable tool calls. "
        "Env: OLLAGRAPH_BACKEND.",
        default="ollama",
    )
    openai_base_url: str = _doc(
        "Base URL of the OpenAI-compatible API when backend = 'openai', usually ending in /v1 "
        "(e.g. http://gpu-box:8000/v1). Env: OLLAGRAPH_OPENAI_BASE_URL.",
        default="",
    )
    openai_api_key: str = _doc(
        "API key for the OpenAI-compatible server; empty: $OPENAI_API_KEY, else none (a "
        "placeholder is sent). Env: OLLAGRAPH_OPENAI_API_KEY.",
        default="",
    )
    temperature: float = _doc("Sampling temperature of the model (0 = deterministic).", default=0.0)
    tools: tuple[str, ...] = _doc(
        "Tools the model may call: sql_query, search_documents, web_search, and the image tools "
        "caption_image, generate_image, upscale_image, embed_faces, find_similar_faces (offered "
        "only for questions about an image file or asking for a picture).",
        default=ALL_TOOLS,
    )
    user_tools: tuple[str, ...] = _doc(
        "Python files of your own tools: `path/to/tools.py` (every public function defined in "
        "it) or `path/to/tools.py:func1,func2`. Their tools join `tools`. In the environment, "
        "separate specs with `;` (OLLAGRAPH_USER_TOOLS='a.py;b.py:f,g'); in a config file, "
        "relative paths are relative to the file. Tools from installed packages (entry points "
        "`ollagraph.tools`) need no entry here: name them in `tools`.",
        default=(),
    )
    max_steps: int = _doc(
        "Most tool-calling steps per question; reaching it gives a partial answer.", default=8
    )
    db: str = _doc(
        "DuckDB database (or CSV/Parquet file) that sql_query reads. Empty: the bundled sample.",
        default="",
    )
    docs: str = _doc(
        "Documents store made by `agent ingest` that search_documents reads. Empty: the store "
        "`agent ingest` writes without --docs if it exists, else the bundled sample documents.",
        default="",
    )
    max_rows: int = _doc("Most result rows sql_query shows the model.", default=20)
    tool_timeout: float = _doc(
        "Seconds one tool call may run before it is abandoned.", default=30.0
    )
    web_timeout: float = _doc("Seconds a web search may wait for the network.", default=10.0)
    max_tool_output: int = _doc(
        "Most characters of one tool result fed back to the model (cut with a note).",
        default=4000,
    )
    allow_writes: bool = _doc(
        "Let sql_query change a writable database (off: read-only). Each write needs the user's "
        "approval in chat, or --yes with ask.",
        default=False,
    )
    sql_memory_limit: str = _doc(
        "Most memory one SQL query may use (DuckDB memory_limit, e.g. '1GB').", default="1GB"
    )
    sql_threads: int = _doc("Threads DuckDB may use for the model's queries.", default=2)
    run_timeout: float = _doc(
        "Seconds one question may take in all (plan, tool calls, answer) before it is stopped "
        "with a partial answer; 0: no limit.",
        default=900.0,
    )
    max_tool_args: int = _doc(
        "Most characters of one tool call's arguments (as JSON); longer calls are refused.",
        default=10_000,
    )
    max_snippet_chars: int = _doc(
        "Most characters of one web result or document chunk shown to the model.", default=1500
    )
    vector_index: bool = _doc(
        "Build an IVF index (k-means lists inside the store file) when ingesting into a "
        "documents store of 5,000+ chunks; it serves searches of stores too big for "
        "vector_cache_mb, which scan only the lists nearest the query. Off by default: its "
        "training makes ingest slower.",
        default=False,
    )
    vector_cache_mb: int = _doc(
        "Most memory (MB) for the in-memory copy of a documents store's vectors that searches "
        "scan exactly (a matrix product per query); larger stores are searched in DuckDB "
        "(through the IVF index if the store has one). 0 turns it off.",
        default=512,
    )
    embed_model: str = _doc(
        "Embedding model for documents: 'minilm' (bundled all-MiniLM-L6-v2, offline) "
        "or 'ollama:NAME' (an Ollama embedding model).",
        default="minilm",
    )
    chunk_size: int = _doc(
        "Tokens per chunk when ingesting documents (MiniLM reads at most 256).", default=256
    )
    chunk_overlap: int = _doc("Tokens shared by neighbouring chunks when ingesting.", default=32)
    request_timeout: float = _doc(
        "Seconds to wait for one model response (longer than a cold model load).", default=600.0
    )
    tool_strategy: str = _doc(
        "How the model calls tools: 'auto' (native tools when the model reports the `tools` "
        "capability, else constrained JSON), 'native', or 'constrained'.",
        default="auto",
    )
    native_min_params: float = _doc(
        "Smallest model, in billions of parameters, that tool_strategy 'auto' lets call tools "
        "natively; smaller models use constrained JSON even when they report `tools` (tiny "
        "models call tools far more reliably under a schema). 0: native whenever reported.",
        default=3.0,
    )
    constrained_retries: int = _doc(
        "Extra attempts when a constrained tool choice fails validation.", default=2
    )
    keep_alive: str = _doc(
        "How long the server keeps the model loaded after a request (Ollama duration, e.g. "
        "'5m', '-1' forever, '0' unload at once).",
        default="5m",
    )
    num_ctx_cap: int = _doc(
        "Largest context window (tokens) to ask for; the toolkit sizes num_ctx to fit the "
        "prompt, tool schemas and history up to this.",
        default=8192,
    )
    checkpoint_db: str = _doc(
        "Where chat threads (`agent chat`/`ask` checkpoints) are kept: empty = SQLite "
        "(threads.sqlite in the state directory); a postgresql://user:password@host:5432/db "
        "URL = PostgreSQL through LangGraph's PostgresSaver (needs the `postgres` extra; its "
        "tables are created on first use). Env: OLLAGRAPH_CHECKPOINT_DB. A graph served by "
        "LangGraph's server uses the server's checkpointer (POSTGRES_URI) instead.",
        default="",
    )
    manage_server: bool = _doc(
        "Start a model server when none answers at the host (`ollama serve` if an ollama "
        "executable is found, else the embedded engine).",
        default=True,
    )
    ollama_path: str = _doc(
        "Path of the ollama executable to start; empty: look for `ollama` on PATH.", default=""
    )
    leave_server_running: bool = _doc(
        "Leave a server this toolkit started running when the command ends.", default=False
    )
    server_start_timeout: float = _doc(
        "Seconds to wait for a started model server to answer.", default=60.0
    )
    auto_pull: bool = _doc(
        "Pull a missing model (with a progress bar) before using it.", default=True
    )

    device: str = _doc(
        "Where torch models run (image workers, the engine's transformers backend): auto "
        "(cuda > mps > cpu), cpu, mps, cuda or cuda:N.",
        default="auto",
    )
    device_mode: str = _doc(
        "single (one device) or auto (spread a large model over the GPUs with accelerate).",
        default="single",
    )
    precision: str = _doc(
        "Weight precision for torch models: auto (bf16 on CUDA with bf16, fp16 on other CUDA and "
        "MPS, fp32 on CPU), float32, float16 or bfloat16. Half precision on a CPU runs as fp32.",
        default="auto",
    )
    quantization: str = _doc(
        "Quantize torch model weights: none, int8, int4 or nf4 (bitsandbytes, CUDA only).",
        default="none",
    )
    batch_size: int = _doc("Most image requests one forward pass serves.", default=8)
    low_cpu_mem_usage: bool = _doc(
        "Load torch weights without a second full copy in RAM.", default=True
    )
    worker_idle_timeout: float = _doc(
        "Seconds an image worker keeps its model loaded without requests (0: until exit).",
        default=300.0,
    )
    caption_model: str = _doc(
        "Image-to-text model (BLIP family): a Hugging Face repo id or a local folder.",
        default="Salesforce/blip-image-captioning-base",
    )
    image_model: str = _doc(
        "Text-to-image model (a diffusers pipeline: SD, SDXL, FLUX): repo id or local folder.",
        default="stabilityai/sd-turbo",
    )
    upscale_model: str = _doc(
        "Super-resolution model: a Swin2SR repo id or folder, or an ESRGAN/Real-ESRGAN .pth or "
        ".safetensors file.",
        default="caidas/swin2SR-classical-sr-x2-64",
    )
    face_model: str = _doc(
        "Face embedding model (a transformers vision backbone): repo id or local folder.",
        default="jayanta/vit-base-patch16-224-in21k-face-recognition",
    )
    image_dir: str = _doc(
        "Folder for generated and upscaled images. Empty: images/ in the state directory.",
        default="",
    )
    max_image_pixels: int = _doc(
        "Largest input image (width x height) the image tools decode.", default=40_000_000
    )
    faces_db: str = _doc(
        "DuckDB file that stores face embeddings. Empty: faces.duckdb in the state directory.",
        default="",
    )
    image_timeout: float = _doc(
        "Seconds one image tool call may run (a first call also loads the model).",
        default=600.0,
    )
    hf_cache_dir: str = _doc(
        "Hugging Face cache for image models. Empty: the hub's default (~/.cache/huggingface).",
        default="",
    )
    models_offline: bool = _doc(
        "Never download image models; use the Hugging Face cache or local paths only.",
        default=False,
    )
    task_overrides: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "description": "Per-task settings that replace the global ones, e.g. "
            "{caption: {precision: float16}}. Tasks: caption, generate, upscale, faces; keys: "
            "model, device, device_mode, precision, quantization, batch_size, "
            "low_cpu_mem_usage. In TOML: [task_overrides.caption]; in the environment: "
            "caption.precision=float16,faces.device=cpu."
        },
    )

    def __post_init__(self) -> None:
        self.tools = tuple(self.tools)
        self.user_tools = tuple(self.user_tools)
        unknown = [name for name in self.tools if name not in ALL_TOOLS]
        if unknown:
            _check_user_tool_names(unknown, self.user_tools)
        for name in (
            "max_steps",
            "max_rows",
            "chunk_size",
            "max_tool_output",
            "sql_threads",
            "max_tool_args",
            "max_snippet_chars",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be at least 1, got {getattr(self, name)}.")
        if self.max_steps > 100:
            raise ConfigError(f"`max_steps` must be at most 100, got {self.max_steps}.")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError("`chunk_overlap` must be at least 0 and smaller than `chunk_size`.")
        if self.backend not in ("ollama", "openai"):
            raise ConfigError(f"`backend` must be ollama or openai, got {self.backend!r}.")
        self.openai_base_url = self.openai_base_url.strip().rstrip("/")
        if self.backend == "openai" and not self.openai_base_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                "backend = 'openai' needs `openai_base_url`, an http(s) URL such as "
                f"http://gpu-box:8000/v1; got {self.openai_base_url!r}.",
                hint="Set openai_base_url in the config file or OLLAGRAPH_OPENAI_BASE_URL.",
            )
        if self.tool_strategy not in ("auto", "native", "constrained"):
            raise ConfigError(
                f"`tool_strategy` must be auto, native or constrained, got {self.tool_strategy!r}."
            )
        for task, values in self.task_overrides.items():
            if task not in TASKS:
                raise ConfigError(
                    f"Unknown task {task!r} in task_overrides; choose from {', '.join(TASKS)}."
                )
            unknown = sorted(set(values) - set(TASK_KEYS))
            if unknown:
                raise ConfigError(
                    f"Unknown key(s) {', '.join(unknown)} in task_overrides.{task}; "
                    f"choose from {', '.join(TASK_KEYS)}."
                )
        if self.batch_size < 1 or self.max_image_pixels < 1:
            raise ConfigError("`batch_size` and `max_image_pixels` must be at least 1.")
        if not self.run_timeout >= 0:  # also refuses NaN
            raise ConfigError(
                f"`run_timeout` must be 0 (no limit) or more, got {self.run_timeout}."
            )
        if self.temperature < 0:
            raise ConfigError(f"`temperature` must be 0 or more, got {self.temperature}.")

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def host(self) -> str:
        """The Ollama server URL this run talks to, with scheme and port."""
        return normalize_host(self.ollama_host or os.environ.get("OLLAMA_HOST", ""))


def _check_user_tool_names(names: list[str], specs: tuple[str, ...]) -> None:
    """Refuse tool names that are neither built-in nor user tools (files, entry points)."""
    from ollagraph.tools.user_tools import describe_problems, entry_point_tools, user_tools

    known = user_tools(specs)  # loads the files (cached) and scans entry points once
    unknown = [name for name in names if name not in known]
    if unknown:
        problems = entry_point_tools()[1]
        raise ConfigError(
            f"Unknown tool(s) {', '.join(unknown)}; choose from "
            f"{', '.join(ALL_TOOLS + tuple(known))}.",
            hint=("Skipped installed tools:\n" + describe_problems(problems)) if problems else None,
        )


def normalize_host(value: str) -> str:
    """Turn an OLLAMA_HOST-style value (`host`, `host:port`, `0.0.0.0`, a URL) into a URL.

    Args:
        value: What the user wrote; empty means the default local server.

    Raises:
        ConfigError: The value is no http(s) address, or its port is not a number from 1 to
            65535.
    """
    written = value
    value = value.strip().rstrip("/")
    if not value:
        return DEFAULT_OLLAMA_HOST
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise _host_error(written, f"the scheme must be http or https, not {scheme!r}")
    rest, _, path = rest.partition("/")  # a server behind a proxy path: https://x/ollama
    if rest.startswith("["):  # an IPv6 literal: [::1]:11434
        host, _, port = rest.partition("]")
        host, port = host + "]", port.removeprefix(":")
    else:
        host, _, port = rest.partition(":")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    if not port:
        port = "443" if scheme == "https" else "11434"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _host_error(written, f"the port must be a number from 1 to 65535, not {port!r}")
    if any(char.isspace() for char in host):
        raise _host_error(written, "the host name contains white space")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


def _host_error(value: str, why: str) -> ConfigError:
    return ConfigError(
        f"Invalid Ollama host {value!r}: {why}.",
        hint="Give a URL like http://127.0.0.1:11434 (--host, $OLLAMA_HOST or ollama_host).",
    )


def field_descriptions() -> dict[str, str]:
    """Return {field name: description} for every setting."""
    return {f.name: f.metadata.get("description", "") for f in fields(Settings)}


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings)}


_KIND_NAMES: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    str: "text",
    bool: "a boolean",
}


def _convert(name: str, raw: Any, kind: Any, where: str) -> Any:
    """Convert a raw value from a file or the environment to the field's type."""
    try:
        if typing.get_origin(kind) is tuple:
            if isinstance(raw, str):
                sep = ";" if name == "user_tools" else ","  # a tools file spec has commas
                return tuple(part.strip() for part in raw.split(sep) if part.strip())
            if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                return tuple(raw)
            raise ValueError("expected a list of names")
        if typing.get_origin(kind) is dict:
            return _convert_overrides(raw)
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected a whole number")
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if kind is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ValueError("expected text")
            return str(raw)
    except ValueError as exc:
        detail = str(exc) if "expected" in str(exc) else f"expected {_KIND_NAMES[kind]}"
        raise ConfigError(f"Invalid value {raw!r} for `{name}` in {where}: {detail}.") from None
    raise ConfigError(f"Unsupported setting type for `{name}`.")  # pragma: no cover


def _convert_overrides(raw: Any) -> dict[str, dict[str, Any]]:
    """Per-task overrides from a TOML table or `caption.precision=fp16,faces.device=cpu`."""
    if isinstance(raw, str):
        table: dict[str, dict[str, Any]] = {}
        for part in (p.strip() for p in raw.split(",") if p.strip()):
            key, sep, value = part.partition("=")
            task, dot, name = key.strip().partition(".")
            if not sep or not dot:
                raise ValueError("expected TASK.KEY=VALUE pairs separated by commas")
            table.setdefault(task, {})[name.strip()] = value.strip()
        return table
    if isinstance(raw, dict) and all(isinstance(v, dict) for v in raw.values()):
        return {str(k): dict(v) for k, v in raw.items()}
    raise ValueError("expected a table of tables, e.g. [task_overrides.caption]")


def config_file_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the config file to read: the explicit path, $OLLAGRAPH_CONFIG, or the default.

    Args:
        explicit: A path given on the command line.

    Returns:
        The path, or None when no file was named and the default one does not exist.
    """
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("OLLAGRAPH_CONFIG"):
        return Path(os.environ["OLLAGRAPH_CONFIG"]).expanduser()
    from ollagraph.agents.paths import state_dir

    default = state_dir(create=False) / "config.toml"
    return default if default.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and type-check a TOML config file.

    Args:
        path: The file.

    Raises:
        ConfigError: The file is missing, not TOML (the message names the line), or has unknown
            keys or values of the wrong type.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"Config file {path} is a directory, not a file.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"Config file {path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} "
            "cannot be decoded.",
            hint="Save the file as UTF-8 (TOML files must be UTF-8).",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None
    kinds = _field_types()
    unknown = [key for key in data if key not in kinds]
    if unknown:
        described = []
        for key in unknown:
            notes = [f"line {n}" for n in [_key_line(text, key)] if n]
            notes += [f"did you mean `{m}`?" for m in get_close_matches(key, kinds, n=1)]
            described.append(f"`{key}`" + (f" ({', '.join(notes)})" if notes else ""))
        raise ConfigError(
            f"Unknown setting(s) in {path}: {', '.join(described)}.",
            hint=f"Valid settings: {', '.join(kinds)}.",
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        at = _key_line(text, key)
        where = f"{path} (line {at})" if at else str(path)
        values[key] = _convert(key, value, kinds[key], where)
    if values.get("user_tools"):
        from ollagraph.tools.user_tools import absolute_spec

        base = path.parent.resolve()
        values["user_tools"] = tuple(absolute_spec(spec, base) for spec in values["user_tools"])
    return values


def _key_line(text: str, key: str) -> int | None:
    """Return the line number where `key` is set at the top level of a TOML text, if found.

    Finds `key = ...`, `"key" = ...`, a dotted `key.sub = ...` and a `[key]` or `[key.sub]`
    table header; good enough to point a person at the line, not a TOML parser.
    """
    name = re.escape(key)
    pattern = re.compile(
        rf"""^\s*(?:(?:{name}|"{name}"|'{name}')\s*[.=]|\[\s*(?:{name}|"{name}")\s*[.\]])"""
    )
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def read_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read `OLLAGRAPH_<FIELD>` variables (and `OLLAMA_HOST`) into typed values.

    Args:
        env: The environment to read; defaults to `os.environ`.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if env.get("OLLAMA_HOST"):
        values["ollama_host"] = env["OLLAMA_HOST"]
    for name, kind in _field_types().items():
        var = f"OLLAGRAPH_{name.upper()}"
        if env.get(var, "") != "":
            values[name] = _convert(name, env[var], kind, f"${var}")
    return values


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings for a run: defaults < config file < environment < overrides.

    The tools of `user_tools` files are loaded (checked) and added to `tools`.

    Args:
        config_file: A config file named on the command line (else $OLLAGRAPH_CONFIG or the
            default file in the state directory, if present).
        overrides: Values from CLI flags; None values mean "not given".
        env: The environment to read; defaults to `os.environ`.

    Raises:
        ConfigError: Any layer has an invalid or unknown value (a `ToolLoadError` when a
            tools file cannot be loaded or one of its functions cannot be described).
    """
    values: dict[str, Any] = {}
    path = config_file_path(config_file)
    if path is not None:
        values.update(read_config_file(path))
    values.update(read_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings = Settings(**values)
    if settings.user_tools:  # the tools of the files join the enabled ones
        from ollagraph.tools.user_tools import file_tool_names

        joined = [n for n in file_tool_names(settings.user_tools) if n not in settings.tools]
        settings = replace(settings, tools=settings.tools + tuple(joined))
    return settings


__all__ = [
    "ALL_TOOLS",
    "DEFAULT_MODEL",
    "IMAGE_TOOLS",
    "TASKS",
    "TASK_KEYS",
    "TEXT_TOOLS",
    "Settings",
    "field_descriptions",
    "load_settings",
    "normalize_host",
    "read_config_file",
    "read_env",
]
