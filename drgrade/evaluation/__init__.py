"""Numbers only, no drawing: metrics, kappa, the patient bootstrap, clinical statistics.

``metrics`` (the weighted-count definitions, the only ones), ``kappa``, ``bootstrap`` and
``patients`` (intervals by patient), ``proportions`` (Wilson), ``clinical`` and ``dme``
(referable DR and DME as programmes define them), ``gate`` (the gate against graders' labels),
``summary`` and ``store`` (the evaluation files). ``drgrade.reporting`` shows them.
"""
