"""``python -m drgrade.deploy MODEL IMAGES``: the entry point of the torch-free ONNX runner.

The runner itself is ``drgrade.serving.runner``; this module keeps the documented command short.
"""

from drgrade.serving.runner import main

if __name__ == "__main__":
    main()
