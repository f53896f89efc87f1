"""Where a job runs: `local` (subprocess or torchrun on this machine) and `azureml` (the only Azure SDK importer)."""
