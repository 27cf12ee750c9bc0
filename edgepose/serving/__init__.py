"""Serving on NVIDIA Triton Inference Server: model-repository writer, config templates,
server discovery/start/stop, the server's Python environment, and a client.

Importing this package imports nothing heavy; ``triton_models`` is the code that runs
inside the server (shipped into each repository by ``edgepose export-triton``).
"""
