"""The classification task engine: backbones, the training recipe and loop, search, cross-validation,
export to ONNX/OpenVINO/INT8."""
