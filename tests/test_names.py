import pytest

from expboard.errors import ValidationError
from expboard.names import check_experiment_name, check_file_name, check_metric_name


@pytest.mark.parametrize("name", ["a", "ridge-sweep_2", "A" * 255])
def test_good_experiment_names(name: str) -> None:
    assert check_experiment_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a/b", "ä", "A" * 256, None, 3, "../x"])
def test_bad_experiment_names_say_what_is_allowed(name: object) -> None:
    with pytest.raises(ValidationError, match="letters, digits"):
        check_experiment_name(name)


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("outputs/model.pt", "outputs/model.pt"), ("./a//b.txt", "a/b.txt"), ("logs/x/events.out.tfevents.1", None)],
)
def test_good_file_names(name: str, normalized: str | None) -> None:
    assert check_file_name(name) == (normalized or name)


@pytest.mark.parametrize(
    "name", ["../secret", "a/../../b", "/etc/passwd", "C:/x", "a\\..\\b", "", ".", "a/\x00b", "logs/.."]
)
def test_traversal_and_absolute_file_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="file name"):
        check_file_name(name)


def test_metric_names() -> None:
    assert check_metric_name("loss/train") == "loss/train"
    for bad in ("", "x" * 256, "a\nb", 5):
        with pytest.raises(ValidationError):
            check_metric_name(bad)
