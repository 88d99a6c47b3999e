"""Shipped models: one folder each with encoder.onnx, generator.onnx and manifest.json."""
