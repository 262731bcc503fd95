"""The OpenAI-compatible surface under ``/openai/v1``: the official client works against it
with a different ``base_url``, on the same keys, limits, queue and fair share as ``/v1``."""
