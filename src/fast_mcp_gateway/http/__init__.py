"""The HTTP service half: authentication, the REST API, health and metrics, the dashboard.

Empty for now; it sits above ``front`` and ``admin`` and below ``gateway`` (assembly).
"""
