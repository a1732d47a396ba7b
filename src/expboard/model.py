"""Models: a versioned registry in the run history, with Azure ML's ``Model`` API (``azureml.core.model``).

>>> model = run.register_model("ridge", "outputs/ridge.pkl", tags={"area": "diabetes"})  # doctest: +SKIP
>>> model = Model.register(ws, model_path="ridge.pkl", model_name="ridge")              # doctest: +SKIP
>>> Model(ws, "ridge").version, [m.version for m in Model.list(ws, name="ridge")]        # doctest: +SKIP
>>> Model(ws, "ridge", version=1).download("here", exist_ok=True)                       # doctest: +SKIP

Each registration of a name gives the next version (1, 2, ...), atomically in the store, so two processes
registering at once get different numbers. A model's files are copied when it is registered (from the run's
files, or uploaded from a local file or folder), so they stay as registered whatever happens to the run. A
file keeps its base name (``outputs/ridge.pkl`` gives ``ridge.pkl``), a folder its name and layout.
MLflow's model registry (``mlflow.register_model``) keeps its versions in the same registry.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import transfer
from .errors import ConflictError, NotFoundError, ValidationError
from .names import check_model_name
from .records import ModelRecord, ModelStatus
from .stores import UNSET, Store
from .workspace import Workspace

__all__ = ["Model", "register_run_model"]


class Model:
    """One version of a registered model (Azure ML's ``azureml.core.model.Model``).

    ``Model(ws, name)`` is the latest version, ``Model(ws, name, version=3)`` or ``Model(ws, id="name:3")`` a
    given one; ``tags``, ``properties`` and ``run_id`` narrow the choice to the latest version matching them.
    """

    def __init__(
        self,
        workspace: Workspace,
        name: str | None = None,
        id: str | None = None,
        tags: Sequence[Any] | Mapping[str, str | None] | None = None,
        properties: Sequence[Any] | Mapping[str, str | None] | None = None,
        version: int | None = None,
        run_id: str | None = None,
        *,
        record: ModelRecord | None = None,
    ) -> None:
        self.workspace = workspace
        if record is None:
            record = _find(workspace.store, name, id, tags, properties, version, run_id)
        self._record = record

    # --- Azure ML's attributes --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def version(self) -> int:
        return self._record.version

    @property
    def id(self) -> str:
        """``name:version``, as Azure ML spells a model's id."""
        return f"{self._record.name}:{self._record.version}"

    @property
    def run_id(self) -> str | None:
        """The run the model was registered from (None for one uploaded from a local path)."""
        return self._record.run_id

    @property
    def experiment_name(self) -> str | None:
        return self._record.experiment

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._record.tags)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._record.properties)

    @property
    def description(self) -> str:
        return self._record.description

    @property
    def created_time(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self._record.created, _dt.timezone.utc)

    @property
    def status(self) -> str:
        """``READY`` once its files are stored (MLflow's ``PENDING_REGISTRATION`` while they are uploaded)."""
        return self._record.status.value

    @property
    def record(self) -> ModelRecord:
        return self._record

    # --- registering and finding ------------------------------------------------------------------
    @staticmethod
    def register(
        workspace: Workspace,
        model_path: str | os.PathLike[str],
        model_name: str,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        description: str | None = None,
        **unsupported: Any,
    ) -> Model:
        """Register the local file or folder ``model_path`` as the next version of ``model_name``, uploading
        its files. Azure ML's deployment-only arguments (``model_framework``, ``sample_input_dataset``...)
        are recorded as properties when they are plain strings, and refused otherwise."""
        check_model_name(model_name)
        properties = {**_str_map(properties, "properties"), **_extra_properties(unsupported)}
        source = Path(model_path)
        if not source.exists():
            raise NotFoundError(f"model path {str(model_path)!r} does not exist; give a local file or folder")
        files = [(source, source.name)] if source.is_file() else _folder_files(source)
        if not files:
            raise ValidationError(f"model folder {str(model_path)!r} holds no files; nothing to register")
        store = workspace.store
        record = store.create_model_version(
            model_name, description=description or "", tags=_str_map(tags, "tags"), properties=properties
        )
        try:
            for path, name in files:
                with path.open("rb") as f:
                    store.write_model_file(model_name, record.version, name, f)
            record = store.update_model_version(model_name, record.version, status=ModelStatus.READY)
        except BaseException:
            try:
                store.update_model_version(model_name, record.version, status=ModelStatus.FAILED)
            except Exception:
                pass  # the original error says what went wrong
            raise
        return Model(workspace, record=record)

    @staticmethod
    def list(
        workspace: Workspace,
        name: str | None = None,
        tags: Sequence[Any] | Mapping[str, str | None] | None = None,
        properties: Sequence[Any] | Mapping[str, str | None] | None = None,
        run_id: str | None = None,
        latest: bool = False,
    ) -> list[Model]:
        """Registered model versions, by name then newest first. ``tags``/``properties``: Azure ML's list of
        ``"key"`` or ``["key", "value"]`` items (or a dict; a value of None matches any value), all of which
        must match; ``latest``: only each model's newest matching version. Versions still uploading are left out."""
        records = [
            r
            for r in workspace.store.list_model_versions(name, run_id)
            if r.status is ModelStatus.READY and _matches(r.tags, tags) and _matches(r.properties, properties)
        ]
        if latest:
            seen: set[str] = set()
            records = [r for r in records if not (r.name in seen or seen.add(r.name))]  # type: ignore[func-returns-value]
        return [Model(workspace, record=r) for r in records]

    # --- files -----------------------------------------------------------------------------------
    def download(self, target_dir: str | os.PathLike[str] = ".", exist_ok: bool = False) -> str:
        """Download the model's files into ``target_dir``; returns the path of the model's file or folder
        (``target_dir`` itself when the model holds several top-level entries). An existing file is a
        ConflictError unless ``exist_ok``."""
        store = self.workspace.store
        infos = store.list_model_files(self.name, self.version)
        target = Path(target_dir)
        if not exist_ok:
            taken = [i.name for i in infos if (target / i.name).exists()]
            if taken:
                raise ConflictError(
                    f"{target / taken[0]} already exists; pass exist_ok=True to overwrite it or choose another "
                    "target_dir"
                )
        for info in infos:
            out = target / info.name
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    for piece in store.iter_model_file(self.name, self.version, info.name):
                        f.write(piece)
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        tops = {i.name.split("/", 1)[0] for i in infos}
        return str(target / tops.pop()) if len(tops) == 1 else str(target)

    def get_files(self) -> builtins.list[str]:
        """The names of the model's files."""
        return [i.name for i in self.workspace.store.list_model_files(self.name, self.version)]

    # --- tags, properties, description -------------------------------------------------------------
    def add_tags(self, tags: Mapping[str, str]) -> None:
        """Add or change tags."""
        self._record = self.workspace.store.update_model_version(self.name, self.version, tags=_str_map(tags, "tags"))

    def remove_tags(self, tags: str | Iterable[str]) -> None:
        """Remove the tags of these keys (a key without a tag is ignored)."""
        keys = [tags] if isinstance(tags, str) else list(tags)
        self._record = self.workspace.store.update_model_version(
            self.name, self.version, tags={str(k): None for k in keys}
        )

    def add_properties(self, properties: Mapping[str, str]) -> None:
        """Add properties; changing an existing one is a ConflictError (properties are add-only)."""
        self._record = self.workspace.store.update_model_version(
            self.name, self.version, properties=_str_map(properties, "properties")
        )

    def update(self, tags: Mapping[str, str] | None = None, description: str | None = None) -> None:
        """Set tags and the description (Azure ML's ``model.update``)."""
        self._record = self.workspace.store.update_model_version(
            self.name,
            self.version,
            tags=_str_map(tags, "tags"),
            description=UNSET if description is None else description,
        )

    def serialize(self) -> dict[str, Any]:
        """The model as a dict, with Azure ML's keys."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "createdTime": self.created_time.isoformat(),
            "description": self.description,
            "runId": self.run_id,
            "experimentName": self.experiment_name,
            "kvTags": self.tags,
            "properties": self.properties,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and (other.name, other.version) == (self.name, self.version)

    def __hash__(self) -> int:
        return hash((self.name, self.version))

    def __repr__(self) -> str:
        return (
            f"Model(workspace={self.workspace!r}, name={self.name!r}, id={self.id!r}, version={self.version}, "
            f"tags={self.tags!r}, properties={self.properties!r})"
        )


def register_run_model(
    workspace: Workspace,
    run_id: str,
    model_name: str,
    model_path: str,
    tags: Mapping[str, str] | None = None,
    properties: Mapping[str, str] | None = None,
    description: str | None = None,
) -> Model:
    """What ``run.register_model`` does: the run's file or folder ``model_path`` becomes the next version."""
    record = workspace.store.create_model_version(
        model_name,
        run_id=run_id,
        run_path=str(model_path),
        description=description or "",
        tags=_str_map(tags, "tags"),
        properties=_str_map(properties, "properties"),
    )
    return Model(workspace, record=record)


# --- helpers ---------------------------------------------------------------------------------------
def _find(
    store: Store,
    name: str | None,
    id: str | None,
    tags: Any,
    properties: Any,
    version: int | None,
    run_id: str | None,
) -> ModelRecord:
    if id is not None:
        model_name, sep, number = str(id).rpartition(":")
        if not sep or not number.isdigit():
            raise ValidationError(f"a model id is 'name:version', such as 'ridge:3' (got {id!r})")
        if name is not None and name != model_name:
            raise ValidationError(f"id {id!r} names model {model_name!r}, not {name!r}")
        name, version = model_name, int(number)
    if name is None and run_id is None:
        raise ValidationError("give the model's name (or id='name:version', or run_id=)")
    if version is not None:
        if name is None:
            raise ValidationError("a version needs the model's name")
        return store.get_model_version(name, version)
    if tags is None and properties is None and run_id is None:
        assert name is not None
        return store.get_model_version(name)
    for r in store.list_model_versions(name, run_id):
        if r.status is ModelStatus.READY and _matches(r.tags, tags) and _matches(r.properties, properties):
            return r
    raise NotFoundError(
        f"no registered model version matches name={name!r}, run_id={run_id!r}, tags={tags!r}, "
        f"properties={properties!r}"
    )


def _matches(values: Mapping[str, str], wanted: Any) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, Mapping):
        pairs = list(wanted.items())
    elif isinstance(wanted, str):
        pairs = [(wanted, None)]
    else:
        pairs = []
        for item in wanted:
            if isinstance(item, str):
                pairs.append((item, None))
            elif isinstance(item, (list, tuple)) and len(item) in (1, 2):
                pairs.append((str(item[0]), None if len(item) == 1 else item[1]))
            else:
                raise ValidationError(f"a tag or property filter is 'key' or ['key', 'value'], got {item!r}")
    return all(k in values and (v is None or values[k] == str(v)) for k, v in pairs)


def _str_map(values: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValidationError(f"{what} must be a dict of names to values, got {type(values).__name__}")
    return {str(k): str(v) for k, v in values.items()}


def _extra_properties(extra: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in extra.items():
        if value is None:
            continue
        if not isinstance(value, (str, int, float, bool)):
            raise ValidationError(
                f"Model.register: {key}= is used by Azure ML's deployment, which expboard does not do; leave it out"
            )
        out[key] = str(value)
    return out


def _folder_files(folder: Path) -> list[tuple[Path, str]]:
    return [(path, f"{folder.name}/{rel}") for path, rel in transfer.iter_files(folder)]
