"""Calibration: INT8 QDQ quantisation of the bundle's vision ONNX from real drive clips.

Clips are read and preprocessed by the runtime's own code (edge.capture, edge.preprocess), so the
quantiser sees exactly the tensors the car will feed the encoder.
"""
