"""Reading what the service logged, as its own formatter renders it."""

import json

from tokensvc.logs import ServiceFormatter


class AccessLog:
    """The access records captured by pytest's `caplog`."""

    def __init__(self, caplog):
        """Read from `caplog`."""
        self.caplog = caplog

    def lines(self, style: str = "json") -> list[str]:
        """Each access record rendered as one LOG_FORMAT line."""
        formatter = ServiceFormatter(style)
        return [formatter.format(r) for r in self.caplog.records if r.name == "tokensvc.access"]

    def fields(self) -> list[dict]:
        """Each access record's fields, read back from its JSON line."""
        return [json.loads(line) for line in self.lines("json")]
