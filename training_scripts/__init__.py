"""The data plane: training and scoring scripts that run unchanged in Azure ML jobs and locally.

Everything here depends only on torch, numpy, pillow, mlflow, onnx, onnxscript and onnxruntime (scoring and
evaluation preprocessing: numpy, pillow and onnxruntime only) and never imports azure_dl.
"""
