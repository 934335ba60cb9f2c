"""A handshake-era upstream that pushes requests to its client (tests/test_mrtr.py).

Run with the gateway's ``protocol: legacy``: during a call it elicits, samples and
lists roots with pushed requests; outside any call, when told its client's roots
changed, it lists them again.  Tools report what it saw, waiting on events (never
on time): ``wait_cancelled`` until a held call was cancelled, ``roots_seen(n)``
until roots were listed ``n`` times outside a call, ``wait_unsubscribed`` until its
resource was unsubscribed.  ``bump`` updates ``pusher://counter`` for subscribers of
either era (``resources/updated``, or a listen stream's event); ``guard`` asks the
2026-07-28 way (``InputRequiredResult``, its state sealed with ``PUSHER_STATE_KEY``
if set: tests/test_request_state.py).
"""

import os
from typing import Any

import anyio
import mcp_types as types
from fastmcp import Context, FastMCP
from fastmcp.tools.base import InputRequiredToolResult
from mcp.server.request_state import RequestStateSecurity
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated

# PUSHER_STATE_KEY: the key its own requestState is sealed with (every run's the same,
# so that a round asked through one gateway process goes on through another).
_key = os.environ.get("PUSHER_STATE_KEY")
mcp = FastMCP("pusher", request_state_security=RequestStateSecurity(keys=[_key])
              if _key else None)
cancelled = anyio.Event()
unsubscribed = anyio.Event()
listings: list[list[str]] = []
listed = {"event": anyio.Event()}
counter = {"n": 0}
subscribers: list[Any] = []
bus = InMemorySubscriptionBus()


def _message(text: str) -> list[types.SamplingMessage]:
    return [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=text))]


async def _elicit_name(ctx: Context) -> str:
    result = await ctx.elicit("Your name?", response_type=str)
    return f"{result.action}:{getattr(result, 'data', None)}"


async def _sample(ctx: Context, text: str) -> str:
    result = await ctx.session.create_message(messages=_message(text), max_tokens=10)
    return f"{result.model}:{result.content.text}"


@mcp.tool
async def interview(ctx: Context, topic: str) -> str:
    """Elicit, then sample: two questions, one after the other."""
    name = await _elicit_name(ctx)
    sampled = await _sample(ctx, f"{topic} for {name}")
    return f"{name}|{sampled}|{ctx.request_id}"


@mcp.tool
async def both(ctx: Context) -> str:
    """Elicit and sample at the same time, plus the client's roots."""
    answers: dict[str, str] = {}

    async def elicit() -> None:
        answers["name"] = await _elicit_name(ctx)

    async def sample() -> None:
        answers["sample"] = await _sample(ctx, "both")

    async with anyio.create_task_group() as tg:
        tg.start_soon(elicit)
        tg.start_soon(sample)
    roots = await ctx.session.list_roots()
    return f"{answers['name']}|{answers['sample']}|{','.join(str(r.uri) for r in roots.roots)}"


@mcp.tool
async def hold(ctx: Context) -> str:
    """Elicit, and remember whether the call was cancelled while it waited."""
    try:
        return await _elicit_name(ctx)
    except anyio.get_cancelled_exc_class():
        cancelled.set()
        raise


@mcp.tool
async def wait_cancelled() -> str:
    with anyio.fail_after(60):
        await cancelled.wait()
    return "cancelled"


@mcp.tool
async def roots_seen(count: int) -> list[str]:
    """The roots listed outside any call, once they were listed ``count`` times."""
    with anyio.fail_after(60):
        while len(listings) < count:
            await listed["event"].wait()
    return listings[count - 1]


@mcp.tool
async def guard(ctx: Context) -> Any:
    """2026-07-28: two questions in an InputRequiredResult, answered on the retry."""
    answers = ctx.input_responses or {}
    if "name" in answers and "color" in answers:
        name, color = answers["name"], answers["color"]
        return f"guard:{(name.content or {}).get('name')}:{(color.content or {}).get('name')}"

    def question(text: str) -> types.ElicitRequest:
        return types.ElicitRequest(params=types.ElicitRequestFormParams(
            message=text, requested_schema={"type": "object",
                                            "properties": {"name": {"type": "string"}}}))

    return InputRequiredToolResult(types.InputRequiredResult(
        input_requests={"name": question("Your name?"), "color": question("Your color?")},
        request_state="asked"))


@mcp.resource("pusher://counter")
def counter_value() -> str:
    return str(counter["n"])


@mcp.tool
async def bump() -> int:
    counter["n"] += 1
    for connection in subscribers:
        await connection.send_resource_updated("pusher://counter")
    await bus.publish(ResourceUpdated(uri="pusher://counter"))
    return counter["n"]


@mcp.tool
async def wait_unsubscribed() -> str:
    with anyio.fail_after(60):
        await unsubscribed.wait()
    return "unsubscribed"


async def _on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    subscribers.append(ctx.session._connection)
    return types.EmptyResult()


async def _on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    subscribers.clear()
    unsubscribed.set()
    return types.EmptyResult()


async def _list_roots(session: Any) -> None:
    result = await session.list_roots()
    listings.append([str(root.uri) for root in result.roots])
    listed["event"].set()
    listed["event"] = anyio.Event()


async def _on_roots_changed(ctx: Any, params: Any) -> None:
    # Outside any call: the client said its roots changed; ask for them again.
    await _list_roots(ctx.session)


low = mcp._mcp_server
low.add_notification_handler("notifications/roots/list_changed", types.NotificationParams,
                             _on_roots_changed)
low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _on_subscribe)
low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                        _on_unsubscribe)
low.add_request_handler("subscriptions/listen", types.SubscriptionsListenRequestParams,
                        ListenHandler(bus))


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
