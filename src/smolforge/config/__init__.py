"""smolforge.yaml: the schema (`schema`), one setting at a time (`fields`), resolving a config from a
preset, a file, flags and `--set` (`loading`), and the messages for bad values (`problems`)."""

from smolforge.config.schema import (
    CardSection,
    DataSection,
    DpoSection,
    EvaluationSection,
    GrpoSection,
    LoraSection,
    ModelSection,
    PublishSection,
    SmolforgeConfig,
    TinySpec,
    TrackingSection,
    TrainingSection,
    dump_dict,
)

__all__ = ["CardSection", "DataSection", "DpoSection", "EvaluationSection", "GrpoSection", "LoraSection",
           "ModelSection",
           "PublishSection", "SmolforgeConfig", "TinySpec", "TrackingSection", "TrainingSection", "dump_dict"]
