"""Export machinery: output formats, atomic sinks, parts and manifests, resume state."""
