"""The local web dashboard: ``trackiod show`` and ``trackiod start --dashboard`` (docs/dashboard.md).

app.py is the server and its access rules, api.py the JSON endpoints, reads.py the read-only queries behind
them, downsample.py the per-pixel reduction, server.py serving it in the foreground (``trackiod show``,
``trackio_shim.show()``); static/ holds the front end (plain ES modules, no build step) and the vendored uPlot.
"""
