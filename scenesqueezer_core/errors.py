"""One exception class per kind of user-facing failure; each message names the cause and the fix."""


class SceneSqueezerError(Exception):
    """Base class of every error the core raises on bad user input."""


class DatasetError(SceneSqueezerError):
    """A dataset folder is missing files, or its model / splits are inconsistent."""


class CameraModelError(SceneSqueezerError):
    """A camera model is unknown or its parameters are invalid."""


class ImageError(SceneSqueezerError):
    """An image cannot be read or has an unsupported shape / dtype."""


class MapFileError(SceneSqueezerError):
    """A map file is missing, corrupt, of the wrong version or of the wrong feature type."""


class ConfigError(SceneSqueezerError):
    """A configuration value is unknown or out of range."""
