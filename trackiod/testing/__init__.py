"""Test doubles selectable by settings: the scripted NVML (``TRACKIOD_NVML=fake:``) and the folder Hub
(``TRACKIOD_HUB=folder:``). No production module imports them; the factories that read those settings
(trackiod.sampling.providers, trackiod.sync.hub) import them by name, and they import only the interfaces."""
