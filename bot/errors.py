"""The two kinds of failure a handler can meet, decided where the cause is known."""


class TemporaryError(Exception):
    """Worth retrying later: a 5xx, a rate limit, a network error, a Kubernetes hiccup."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help: the work item goes to the dead letters with this reason."""
