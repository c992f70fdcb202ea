"""User-facing errors.

Every error a user can cause (a bad config, file, tool call, checkpoint or command line) is raised as a
subclass of `UserError`; the `ascl` command prints its message on one line and exits with code 2.
"""


class UserError(Exception):
    """An error caused by the user's input; its message names the thing and the fix."""


class ConfigError(UserError):
    """A malformed model or run config (names the key and the file)."""


class WeightsError(UserError):
    """A weights folder or file that does not match its config (names the tensor and the file)."""


class ModelNotFoundError(UserError):
    """A `--model` value that resolves to nothing (says what would)."""


class RuleBookError(UserError):
    """A malformed rule book or rule (names the file, the line, the field and the fix)."""


class ChatError(UserError):
    """A conversation, tool schema or chat format that cannot be rendered (names the message and the fix)."""
