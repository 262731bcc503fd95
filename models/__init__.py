"""Models: the repository (``repository``), model configs (``config``), tokenisation
(``tokenize``) and sequence-length buckets (``bucketing``).

Import the submodule you need: a package-level re-export would load the tokenizer library into
every process that only resolves a model name. Building a model lives in ``models.build`` and
is imported only by the commands that build.
"""
