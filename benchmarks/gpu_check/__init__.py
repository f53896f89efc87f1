"""The one prepared GPU check (issue 14): `python -m benchmarks.gpu_check [--smoke] [--out DIR]`, or `make gpu-check`.

Torch and the standard library are all it needs (the device machine has its own PyTorch and no network), and the
project's own models (training_scripts.resnet, training_scripts.lstm), never torchvision, timm, mlflow or onnx;
stage c uses the project's image cache where numpy and Pillow import. Each stage runs in its own try/except under a
time budget, and gpu_check.json is rewritten after every stage; gpu_check.md (a Markdown table) is written at the
end. Modules: runner (CLI, stage order, budgets, watchdog, files), sizes (full vs smoke sizes, peak FLOP/s, MFU),
timing (synchronised step timer), device_loader (the image cache, or a synthetic uint8 pool, fed to the device and
augmented there), resnet_stages, other_stages (environment, LSTM, fp16, checkpoint, DDP), markdown.
"""
