"""azure-dl: PyTorch training scripts from a laptop to Azure Machine Learning and back to a served model."""

__version__ = "0.1.0"
