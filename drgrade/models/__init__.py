"""Plain ``nn.Module`` building blocks (no Lightning here).

``backbones/`` (one interface, one registry of families: open_clip ResNets and ViTs, FLAIR),
``cbam``, ``fcn_decoder``, ``prompt_learner``, ``losses``, ``weights`` (tensors-only loading),
``downloads`` (offline checks) and ``cnn`` (timm ImageNet CNNs for the plain baseline).
"""
