"""The project's exception types.

Every error a user can cause is one of these. They carry a message written for a person (what went
wrong and what to do next); the CLI edge prints it and exits non-zero. Library code raises them and
never prints.
"""

from __future__ import annotations


class OllagraphError(Exception):
    """Base class: an error with a message meant for the user.

    Attributes:
        hint: An optional next step ("run `agent ingest DOCS`"), printed on its own line.
        exit_code: The process exit code the CLI uses for this error.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ConfigError(OllagraphError):
    """A configuration file, environment variable or flag has an invalid value."""

    exit_code = 2


class DeviceError(ConfigError):
    """A device, precision, device_mode or quantization setting cannot run on this machine."""


class StateDirError(OllagraphError):
    """The state directory (OLLAGRAPH_HOME) cannot be created or written."""


class DatabaseError(OllagraphError):
    """A DuckDB database (or CSV/Parquet file) is missing, corrupt, locked or unreadable."""


class DocumentStoreError(OllagraphError):
    """A documents store is missing, corrupt or was built with another embedding model."""


class IngestError(OllagraphError):
    """A file or folder given to `agent ingest` cannot be read."""


class ModelError(OllagraphError):
    """The model server is unreachable, the model is missing, or a model call failed."""


class ImageInputError(OllagraphError):
    """An image input is missing, not an image, truncated, or too large to decode safely."""


class WorkerError(OllagraphError):
    """A torch worker cannot load its model (not cached offline, wrong kind) or run a task."""


class ToolError(OllagraphError):
    """A tool failed in a way the model should read and react to (bad SQL, no network, ...).

    The tools node turns it into a ToolMessage; it never ends a run.
    """


class ToolTimeoutError(ToolError):
    """A tool ran past its time limit."""


class RunTimeoutError(OllagraphError):
    """One question ran past its total time limit (`run_timeout`)."""


class ToolLoadError(ConfigError):
    """A user tool (a file or an installed package's entry point) cannot be loaded or described.

    The message names the function, where it came from, and the fix.
    """


class QuestionSetError(ConfigError):
    """An `agent eval` question set cannot be read or has an invalid entry."""


class CheckpointDBError(OllagraphError):
    """The chat threads database named by `checkpoint_db` (PostgreSQL) cannot be used.

    Its support is not installed, the server cannot be reached, it refuses the credentials, the
    database is missing, or the checkpoint tables cannot be created.
    """
