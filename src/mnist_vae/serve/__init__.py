"""Serving a trained model: the browser explorer (FastAPI, the optional ``web`` extra) and ONNX export.

Importing this package imports nothing optional; :mod:`.app` needs FastAPI, :mod:`.export` ONNX tools only to check its files.
"""
