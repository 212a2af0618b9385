"""The one exception type that the CLI turns into a one-line message instead of a traceback."""


class LmisaError(Exception):
    """A user-facing error: bad input, a missing file, a refused overwrite. The message names the file."""
