"""HumanAesExpert-style model core: pure PyTorch/transformers, no Django.

Modules: ``standard`` (the 12-dimension standard), ``synthetic`` (demo/test data), ``data`` (readers, tiling,
collate), ``model`` (backbone + three heads + MetaVoter), ``training``, ``evaluation``, ``scoring`` and
``cli`` (``python -m model_core``). Heavy modules (torch, transformers) are imported only by the modules that
need them, so ``import model_core.standard`` stays cheap for the web process.
"""
