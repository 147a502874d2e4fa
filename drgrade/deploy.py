"""``python -m drgrade.deploy MODEL IMAGES``: the entry point of the torch-free ONNX runner.

The runner itself is ``drgrade.serving.runner``; this module keeps the documented command short
and names the extra to install when onnxruntime or onnx is missing.
"""

import sys

if __name__ == "__main__":
    try:
        from drgrade.serving.runner import main
    except ImportError as error:
        if error.name not in ("onnx", "onnxruntime"):
            raise
        print(
            f"python -m drgrade.deploy: error: {error.name} is not installed: pip install 'drgrade[deploy]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    main()
