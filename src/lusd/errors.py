"""User-facing errors: each carries one line that says what went wrong and what to do."""


class LUSDError(Exception):
    """Base class for errors caused by the user's input, model or environment."""


class ImageInputError(LUSDError):
    """The input image is missing, unreadable, not an image or too large."""


class PromptError(LUSDError):
    """A prompt is empty or longer than the text encoder accepts."""


class ModelLoadError(LUSDError):
    """The model folder or checkpoint cannot be loaded as Stable Diffusion."""


class UnsupportedModelError(ModelLoadError):
    """The model is of a family lusd cannot edit with (SD3, Flux, ControlNet, ...)."""


class DeviceError(LUSDError):
    """The requested device or dtype is not available."""


class ConfigError(LUSDError):
    """An unknown preset or an invalid EditConfig value."""


class LicenseError(LUSDError):
    """A model card cannot be read, or the model's licence forbids what was asked."""


class SigningError(LUSDError):
    """A C2PA certificate or key cannot be used to sign Content Credentials."""
