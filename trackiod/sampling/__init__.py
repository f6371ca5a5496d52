"""Node readings (NVML, psutil) on their own thread, and energy attributed to runs."""
