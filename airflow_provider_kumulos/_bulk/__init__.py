"""The bulk write of attributes, one module per stage: records, sources, runner, failures file, report, sync, run."""
