"""Mirrors: the daemon copies committed runs to other trackers (docs/mirrors.md).

:mod:`.hub` runs them on one thread fed by the writer after each commit; :mod:`.base` is the interface a
backend implements; each backend module imports its SDK only when a mirror of that kind opens.
"""
