"""The public surface is declared once in expboard/__init__.py; this pins it."""

import expboard

EXPECTED = {
    "AuthError",
    "ConfigError",
    "ConflictError",
    "CorruptEventFileError",
    "Environment",
    "Estimator",
    "ExpboardError",
    "Experiment",
    "MetricKind",
    "NotFoundError",
    "PayloadTooLargeError",
    "Run",
    "RunConfiguration",
    "RunFailedError",
    "RunStatus",
    "ScriptRunConfig",
    "StoreUnavailableError",
    "SummaryWriter",
    "VERSION",
    "ValidationError",
    "Workspace",
    "__version__",
}


def test_public_names_are_pinned() -> None:
    assert set(expboard.__all__) == EXPECTED


def test_every_public_name_is_importable() -> None:
    for name in expboard.__all__:
        assert getattr(expboard, name) is not None, name


def test_errors_carry_http_status() -> None:
    assert expboard.ValidationError.status_code == 400
    assert expboard.NotFoundError.status_code == 404
    assert expboard.ConflictError.status_code == 409
    assert expboard.AuthError.status_code == 401
    assert issubclass(expboard.ValidationError, ValueError)
