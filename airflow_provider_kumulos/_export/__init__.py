"""The export pipeline, one module per stage: options, select, formats, sinks, partitions, manifest, counts, resume, run."""
