"""The public surface is declared once in expboard/__init__.py; this pins it."""

import subprocess
import sys

import expboard
from expboard.lazy import read_type_checking_imports

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
    "Model",
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


def test_every_public_name_has_its_import_for_type_checkers_and_the_lazy_loader() -> None:
    """A name in ``__all__`` is imported under ``if TYPE_CHECKING:`` (where the lazy loader looks it up),
    for the package and for its lazy subpackages."""
    import expboard.compute
    import expboard.tensorboard

    for package in (expboard, expboard.compute, expboard.tensorboard):
        where = read_type_checking_imports(package.__file__ or "", package.__name__)
        missing = set(package.__all__) - set(where) - {"VERSION", "__version__"}
        assert not missing, f"{package.__name__}: import {sorted(missing)} under `if TYPE_CHECKING:`"
        assert set(where) <= set(package.__all__), f"{package.__name__}: add {set(where) - set(package.__all__)}"
        for name, module in where.items():
            assert getattr(package, name) is getattr(sys.modules[module], name)
        assert set(package.__all__) <= set(dir(package))


def test_import_expboard_loads_no_layer_and_names_load_on_use() -> None:
    code = (
        "import sys, expboard\n"
        "print(sorted(m for m in sys.modules if m.startswith('expboard')))\n"
        "from expboard import Workspace\n"
        "print('expboard.workspace' in sys.modules, 'expboard.run' in sys.modules, 'numpy' in sys.modules)\n"
        "print(expboard.tensorboard.__name__)\n"
        "try:\n    expboard.Wrkspace\nexcept AttributeError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "['expboard', 'expboard.errors', 'expboard.lazy', 'expboard.plugins']"
    assert lines[1] == "True False False"
    assert lines[2] == "expboard.tensorboard"
    assert lines[3] == "module 'expboard' has no attribute 'Wrkspace'"
