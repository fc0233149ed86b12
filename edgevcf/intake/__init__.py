"""Intake: bringing a network trained elsewhere into edgevcf (issue 26, in progress).

* :mod:`~edgevcf.intake.spec`: the user's declaration of how the network was trained to see
  its input (size, channels, layout, scaling, mean/std) and what its output means — a small
  strict TOML beside the model;
* :mod:`~edgevcf.intake.onnx_graph`: what a foreign ONNX graph says about itself (input layout,
  channels, size, batch; the kind of its output), the declaration checked against it, and the
  graph normalised to edgevcf's canonical form: NCHW float input, one logit of "fresh" out.

Workstation side only (needs onnx); the cart never imports it.
"""
