"""The shared core (``orders.core``) and the tools behind the `orders` command.

One subpackage per tool: ``stack`` (`orders up`), ``dashboard`` (and `top`), ``dlq``, ``bench``,
``registry``; ``produce`` and ``stats`` are single modules. Tools may import anything; the core,
the bridge and the worker never import a tool (import-linter contracts in pyproject.toml).
"""
