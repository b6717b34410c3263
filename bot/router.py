"""Route deliveries to handlers by event and action; each concern registers on its own router."""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from bot.context import Context
from bot.delivery import Delivery

Handler = Callable[[Delivery, Context], Awaitable[None]]
ANY_ACTION = "*"


@dataclass
class Router:
    """Handlers keyed by (event, action); action `*` matches every action of the event."""

    handlers: dict[tuple[str, str], list[Handler]] = field(default_factory=dict)

    def on(self, event: str, *actions: str) -> Callable[[Handler], Handler]:
        """Register the decorated handler for the event and actions (all actions when none given)."""

        def register(handler: Handler) -> Handler:
            for action in actions or (ANY_ACTION,):
                self.handlers.setdefault((event, action), []).append(handler)
            return handler

        return register

    def handlers_for(self, event: str, action: str) -> list[Handler]:
        """Return the handlers of a delivery, specific ones first."""
        return [*self.handlers.get((event, action), []), *self.handlers.get((event, ANY_ACTION), [])]

    def wants(self, event: str, action: str) -> bool:
        """Return whether any handler would run for this event and action."""
        return bool(self.handlers_for(event, action))

    @classmethod
    def compose(cls, routers: Iterable["Router"]) -> "Router":
        """Merge the routers of every concern into one."""
        merged = cls()
        for router in routers:
            for key, handlers in router.handlers.items():
                merged.handlers.setdefault(key, []).extend(handlers)
        return merged
