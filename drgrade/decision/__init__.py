"""The decision rule: how a model's logits become probabilities, a grade and referral flags.

``rule.DecisionRule`` holds everything fitted on the validation split (temperature, per-class
thresholds, referral operating cuts, uncertainty cut); ``apply`` is the one module where they are
applied (the exported ONNX graph is traced from it); ``fitting`` and ``thresholds`` fit them;
``checks`` is the torch-free validation of a rule and of each output, shared by the ONNX runner.
Nothing is imported here, so the torch-free runner can import ``drgrade.decision.checks`` alone.
"""
