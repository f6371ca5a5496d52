"""Test doubles selectable by settings (NVML, the Hub). Only factories import these."""
