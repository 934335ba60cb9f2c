"""(filled in below)"""
from starlette.routing import Route


def routes(ui: object) -> list[Route]:
    return []
