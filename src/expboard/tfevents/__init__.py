"""TensorBoard event files without TensorFlow: a fast writer, a resumable reader and a SummaryWriter.

Runtime dependencies: numpy, crc32c and tensorboard's protobuf classes (Pillow optionally, for PNG).
Nothing here imports the rest of expboard but ``expboard.errors``.

- :mod:`.summary`: pure functions building Event payloads / Summary.Values (scalars, text, images,
  histograms, HParams) and the vectorized :func:`encode_scalars` (:func:`encode_scalar_series`: many
  series of one tag in one call).
- :mod:`.writer`: :class:`EventFileWriter`, one buffered event file; :func:`write_event_file`, a whole file
  in one write.
- :mod:`.reader`: :class:`EventFileReader` / :class:`RunReader` (resumable), decoded :class:`Event`
  objects and the vectorized :func:`read_scalars`.
- :mod:`.summary_writer`: :class:`SummaryWriter`, a drop-in for ``torch.utils.tensorboard.SummaryWriter``.
"""

from ._crc import frame_record, masked_crc32c
from .events import Event, HistogramValue, ImageValue, SummaryValue, TensorValue, decode_event
from .reader import (
    CorruptEventFileError,
    EventFileReader,
    RunReader,
    ScalarSeries,
    event_files,
    is_event_file,
    read_scalars,
)
from .summary import (
    DatasetType,
    HParam,
    HParamType,
    MetricSpec,
    SessionStatus,
    encode_scalar_series,
    encode_scalars,
    encoded_image_value,
    file_version_event,
    histogram_value,
    histogram_value_from_buckets,
    hparams_experiment,
    hparams_session_end,
    hparams_session_start,
    image_size,
    image_value,
    scalar_event,
    scalar_value,
    summary_event,
    text_table_value,
    text_value,
)
from .summary_writer import SummaryWriter
from .writer import EventFileWriter, event_file_name, write_event_file

__all__ = [
    "CorruptEventFileError",
    "Event",
    "EventFileReader",
    "HistogramValue",
    "ImageValue",
    "RunReader",
    "ScalarSeries",
    "SummaryValue",
    "SummaryWriter",
    "TensorValue",
    "decode_event",
    "event_files",
    "is_event_file",
    "read_scalars",
    "DatasetType",
    "EventFileWriter",
    "HParam",
    "HParamType",
    "MetricSpec",
    "SessionStatus",
    "encode_scalar_series",
    "encode_scalars",
    "encoded_image_value",
    "event_file_name",
    "file_version_event",
    "frame_record",
    "hparams_experiment",
    "hparams_session_end",
    "hparams_session_start",
    "histogram_value",
    "histogram_value_from_buckets",
    "image_size",
    "image_value",
    "masked_crc32c",
    "scalar_event",
    "scalar_value",
    "summary_event",
    "text_table_value",
    "text_value",
    "write_event_file",
]
