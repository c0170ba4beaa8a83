"""One exception root; every message names the file, band or YAML key and says how to fix it."""


class LandcoverError(Exception):
    """A problem the user can fix. The CLI prints the message on one line and exits with code 2."""


class ConfigError(LandcoverError):
    """The YAML (or a --set override) is invalid."""


class InputError(LandcoverError):
    """An input raster is missing, unreadable or inconsistent with the others."""


class ReadError(InputError):
    """A file failed while its pixels were read (an expired signature, a timeout, a corrupt block):
    the finished parts of the write are kept for ``--resume``."""


class OutputError(LandcoverError):
    """The output cannot be written where the config asks."""


class DataError(LandcoverError):
    """The imagery cannot support the requested model (e.g. fewer valid pixels than k)."""
