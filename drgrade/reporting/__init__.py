"""What people look at: every figure and the report built from run folders.

``plots`` and ``figures`` draw (curves, confusion matrices, ROC, reliability, referral),
``overlays`` and ``misjudged`` the attention maps and the gate's misjudged photographs;
``tables``, ``markup``, ``provenance`` and ``paper`` (the published numbers) make ``report``'s
Markdown and CSV tables. The numbers themselves come from ``drgrade.evaluation``.
"""
