"""Deterministic ML (docs/ml-spec.md): the model format, integer operators, the native runner.

- :mod:`opml.ml.format`: dtypes, ops, :class:`Model` (manifest, commitment, tensors by key), the
  ``*.opml`` file reader/writer with every check of ml-spec §3.4, :class:`GraphBuilder`.
- :mod:`opml.ml.ops`: one numpy function per operator (ml-spec §4, §10).
- :mod:`opml.ml.blocks`: GGUF ``q4_1``/``q8_0`` blocks as integers (fp16 scales decoded by their bits).
- :mod:`opml.ml.gguf_quant`, :mod:`opml.ml.llama_tables`: float weights to GGUF blocks and the
  fixed-point tables of the LLaMA ops, for exporters and tests.
- :mod:`opml.ml.runner`: :func:`run_model` (every value, key and state ``S_i``) and a batch path.
- :mod:`opml.ml.quantize`: the float → int8 exporter.
- :mod:`opml.ml.cost`: the bound on the MIPS programs' VM steps (ml-spec §9), a model's ``maxSteps``.
"""
