"""The measurements of bench/pipeline.py, one module per phase (its docstring describes each):
``encodings`` (frame encodings on Kafka), ``ingest`` (the ingest worker's loop against
FFmpeg's decoding), ``throughput`` (the pipeline at capacity against the bare model) and
``latency`` (a camera below capacity)."""
