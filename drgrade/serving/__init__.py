"""Serving a trained model: ONNX export, INT8 quantisation, the torch-free runner, the screening page.

``export`` (torch) writes the graph, with the decision rule inside; ``quantize`` makes its INT8
twin; ``runner`` grades folders with onnxruntime, OpenCV and NumPy only; ``screening`` grades a few
files for the web page (a checkpoint or an ONNX file); ``app`` is the Gradio page. Nothing is
imported here, so ``drgrade.serving.runner`` stays free of torch.
"""
