"""Golden and check for hint-train's TensorBoard event files (pip `tensorboard`, no TensorFlow).

    python -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python crates/hint-train/scripts/tensorboard_golden.py write   # the golden file
    /tmp/tb/bin/python crates/hint-train/scripts/tensorboard_golden.py check MODEL_DIR

`write` makes tests/data/tensorboard/events.out.tfevents.golden with TensorBoard's own
writer (read by the Rust test `reads_an_event_file_written_by_tensorboard`); `check` reads
the event files of a `hint train` model directory with TensorBoard's EventAccumulator and
prints the scalar tags and their counts (what TensorBoard will show).
"""

import os
import sys

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_DIR = os.path.join(HERE, "..", "tests", "data", "tensorboard")


def write():
    tmp = os.path.join(GOLDEN_DIR, "tmp")
    os.makedirs(tmp, exist_ok=True)
    writer = EventFileWriter(tmp)
    for step, values in [(1, [("train/loss", 3.25)]), (2, [("train/loss", 2.75), ("eval/seen/exact_match", 12.5)])]:
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values]
        )
        writer.add_event(event_pb2.Event(wall_time=1.0e9 + step, step=step, summary=summary))
    writer.close()
    (name,) = os.listdir(tmp)
    os.replace(os.path.join(tmp, name), os.path.join(GOLDEN_DIR, "events.out.tfevents.golden"))
    os.rmdir(tmp)


def check(model_dir):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(model_dir)
    multiplexer.Reload()
    for run, tags in multiplexer.Runs().items():
        for tag in sorted(tags.get("scalars", [])):
            events = multiplexer.Scalars(run, tag)
            print(f"{run}\t{tag}\t{len(events)} points, last step {events[-1].step} = {events[-1].value:.4g}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["write"]:
        write()
    elif sys.argv[1:2] == ["check"] and len(sys.argv) == 3:
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
