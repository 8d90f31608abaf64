"""Deterministic ML (docs/ml-spec.md): the model format, integer operators, the native runner.

- :mod:`opml.ml.format`: dtypes, ops, :class:`Model` (manifest, commitment, tensors by key), the
  ``*.opml`` file reader/writer with every check of ml-spec §3.4, :class:`GraphBuilder`.
- :mod:`opml.ml.ops`: one numpy function per operator (ml-spec §4).
- :mod:`opml.ml.runner`: :func:`run_model` (every value, key and state ``S_i``) and a batch path.
- :mod:`opml.ml.quantize`: the float → int8 exporter.
- :mod:`opml.ml.cost`: the bound on the MIPS programs' VM steps (ml-spec §9), a model's ``maxSteps``.
"""
