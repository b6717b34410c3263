"""Route deliveries to handlers by event and action; each feature registers on its own router.

A handler names the typed event it takes (`bot.events`); the router reads the delivery into it
once per handler, and a delivery that lacks a field the handler needs is skipped with the reason.
"""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bot.context import Context
from bot.delivery import Delivery
from bot.events import Event, read

E = TypeVar("E", bound=Event)
ANY_ACTION = "*"


@dataclass(frozen=True)
class Route(Generic[E]):
    """One handler and the event type it reads."""

    kind: type[E]
    handler: Callable[[E, Context], Awaitable[None]]

    @property
    def name(self) -> str:
        """Return the handler's dotted name, for logs and tests."""
        return f"{self.handler.__module__}.{self.handler.__qualname__}"

    async def __call__(self, delivery: Delivery, ctx: Context) -> None:
        """Read the delivery as this route's event and run the handler, unless it lacks a field."""
        event = read(delivery, self.kind)
        if event is not None:
            await self.handler(event, ctx)


@dataclass
class Router:
    """Handlers keyed by (event, action); action `*` matches every action of the event."""

    routes: dict[tuple[str, str], list[Route[Event]]] = field(default_factory=dict)

    def on(
        self, kind: type[E], *actions: str
    ) -> Callable[[Callable[[E, Context], Awaitable[None]]], Route[E]]:
        """Register the decorated handler for the event and actions (all actions when none given).

        The name it decorates becomes its `Route`: called with a delivery, as the workers call it.
        """

        def register(handler: Callable[[E, Context], Awaitable[None]]) -> Route[E]:
            route = Route(kind, handler)
            for action in actions or (ANY_ACTION,):
                self.routes.setdefault((kind.name, action), []).append(route)  # type: ignore[arg-type]
            return route

        return register

    def handlers_for(self, event: str, action: str) -> list[Route[Event]]:
        """Return the routes of a delivery, specific ones first."""
        return [*self.routes.get((event, action), []), *self.routes.get((event, ANY_ACTION), [])]

    def wants(self, event: str, action: str) -> bool:
        """Return whether any handler would run for this event and action."""
        return bool(self.handlers_for(event, action))

    @classmethod
    def compose(cls, routers: Iterable["Router"]) -> "Router":
        """Merge the routers of every feature into one."""
        merged = cls()
        for router in routers:
            for key, routes in router.routes.items():
                merged.routes.setdefault(key, []).extend(routes)
        return merged
