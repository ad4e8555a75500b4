"""Errors that stage code raises; the gRPC layer maps each to a status code with the message unchanged."""


class InvalidInput(ValueError):
    """The request itself is wrong (not an image, too large, unknown category): INVALID_ARGUMENT / HTTP 400."""


class NoPersonFound(RuntimeError):
    """The photo holds no person (or no garment) to work on: FAILED_PRECONDITION / HTTP 422."""


class WeightsMissing(RuntimeError):
    """A backend's weight files are absent or corrupt; the message names them and the command that gets them."""
