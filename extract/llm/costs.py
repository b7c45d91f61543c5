"""Token usage tally, cost estimates and the dry-run estimate.

Prices are USD per million tokens. The table below holds list prices of a few OpenAI models
at the time of writing; they change, so check https://openai.com/api/pricing and set
``price_input_per_mtok`` / ``price_output_per_mtok`` in the config for anything else (a
model with no known price reports its cost as unknown, never as 0). The Batch API costs
half the list price (``batch_discount``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: model (prefix) -> (input, cached input, output) USD per 1M tokens
PRICES_PER_MTOK: dict[str, tuple[float, float, float]] = {
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5": (1.25, 0.125, 10.00),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
}
CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str) -> int:
    """Rough token count of English-like text (4 characters per token)."""
    return max(1, int(round(len(text) / CHARS_PER_TOKEN)))


@dataclass
class Prices:
    input: float | None
    cached_input: float | None
    output: float | None
    source: str

    @property
    def known(self) -> bool:
        return self.input is not None and self.output is not None


def prices_for(
    model: str,
    input_per_mtok: float | None = None,
    output_per_mtok: float | None = None,
    cached_per_mtok: float | None = None,
) -> Prices:
    """Prices from the config when set, else from the table (longest matching model prefix)."""
    if input_per_mtok is not None and output_per_mtok is not None:
        return Prices(
            input_per_mtok,
            cached_per_mtok if cached_per_mtok is not None else input_per_mtok,
            output_per_mtok,
            "config",
        )
    match = max(
        (k for k in PRICES_PER_MTOK if model == k or model.startswith(k + "-")), key=len, default=None
    )
    if match is None:
        return Prices(None, None, None, "unknown")
    i, c, o = PRICES_PER_MTOK[match]
    return Prices(i, c, o, f"table:{match}")


@dataclass
class UsageTally:
    """Tokens and requests of one run (what was paid for, not cache hits)."""

    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    retries: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add_usage(self, usage: dict | None) -> None:
        u = usage or {}
        self.input_tokens += int(u.get("input_tokens") or u.get("prompt_tokens") or 0)
        self.output_tokens += int(u.get("output_tokens") or u.get("completion_tokens") or 0)
        self.cached_input_tokens += int(u.get("cached_input_tokens") or 0)
        self.reasoning_tokens += int(u.get("reasoning_tokens") or 0)

    def note_status(self, status: str) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def cost(self, prices: Prices, discount: float = 1.0) -> float | None:
        if not prices.known:
            return None
        uncached = self.input_tokens - self.cached_input_tokens
        usd = (
            uncached * prices.input
            + self.cached_input_tokens * (prices.cached_input or prices.input)
            + self.output_tokens * prices.output
        ) / 1e6
        return usd * discount

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "retries": self.retries,
            "by_status": dict(self.by_status),
        }


def normalise_usage(raw: dict | None) -> dict[str, int]:
    """Usage of a Responses or chat-completions body as {input_tokens, output_tokens, cached_input_tokens,
    reasoning_tokens}."""
    raw = raw or {}
    inp = int(raw.get("input_tokens") or raw.get("prompt_tokens") or 0)
    out = int(raw.get("output_tokens") or raw.get("completion_tokens") or 0)
    det_in = raw.get("input_tokens_details") or raw.get("prompt_tokens_details") or {}
    det_out = raw.get("output_tokens_details") or raw.get("completion_tokens_details") or {}
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cached_input_tokens": int((det_in or {}).get("cached_tokens") or 0),
        "reasoning_tokens": int((det_out or {}).get("reasoning_tokens") or 0),
    }


@dataclass
class DryRunEstimate:
    requests: int
    cached: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    prices: Prices

    def format(self) -> str:
        cost = (
            f"${self.cost_usd:,.4f}"
            if self.cost_usd is not None
            else "unknown (set price_input_per_mtok / price_output_per_mtok)"
        )
        return (
            f"dry run: {self.requests} request(s) to send ({self.cached} answered from the cache); "
            f"estimated {self.input_tokens:,} input + {self.output_tokens:,} output tokens; "
            f"estimated cost {cost} [prices: {self.prices.source}]"
        )


def estimate(
    inputs: list[str], cached: int, output_tokens_each: int, prices: Prices, discount: float = 1.0
) -> DryRunEstimate:
    """Dry-run estimate for the request texts ``inputs`` (system + user of each request)."""
    tin = sum(estimate_tokens(t) for t in inputs)
    tout = output_tokens_each * len(inputs)
    cost = (tin * prices.input + tout * prices.output) / 1e6 * discount if prices.known else None
    return DryRunEstimate(len(inputs), cached, tin, tout, cost, prices)
