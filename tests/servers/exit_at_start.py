"""A stdio upstream that fails before speaking MCP, as a misconfigured server does."""

import sys

print("fatal: WEATHER_API_KEY is not set", file=sys.stderr, flush=True)
sys.exit(1)
