"""A fake OpenAI-compatible chat completions endpoint.

`POST /v1/chat/completions` with a bearer key; answers a `chat.completion` whose
`choices[0].message.content` is the JSON verdict set on the fake, or malformed content when told.
Errors as `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply


def oa_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class OpenAiFake(FakeHttpServer):
    def __init__(self, api_key: str = "sk-fake") -> None:
        super().__init__()
        self.api_key = api_key
        self.verdict: dict[str, Any] = {"intent": "high", "fit_score": 77, "reasons": ["asks for a quote"]}
        self._malformed: list[tuple[str, str]] = []  # (content, finish_reason)
        self._mlock = threading.Lock()

    def error_reply(self, status: int) -> Reply:
        if status == 429:
            return Reply(
                status, oa_error("Rate limit reached for requests", "requests", "rate_limit_exceeded")
            )
        if status == 401:
            return Reply(
                status, oa_error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
            )
        return Reply(
            status, oa_error("The server had an error while processing your request.", "server_error", None)
        )

    def malformed(
        self, times: int = 1, content: str = "Sure! Here is the score: high", finish_reason: str = "stop"
    ) -> None:
        """The next `times` completions carry `content` instead of the verdict JSON."""
        with self._mlock:
            self._malformed.extend((content, finish_reason) for _ in range(times))

    def route(self, request: RecordedRequest) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error_reply(401)
        if request.path != "/v1/chat/completions" or request.method != "POST":
            return Reply(404, oa_error("Not found", "invalid_request_error", None))
        try:
            body = request.json()
            model = str(body["model"])
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise TypeError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError):
            return Reply(
                400,
                oa_error("We could not parse the JSON body of your request.", "invalid_request_error", None),
            )
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and not (fmt.get("json_schema") or {}).get("schema"):
            return Reply(
                400,
                oa_error(
                    "Missing required parameter: 'response_format.json_schema'.",
                    "invalid_request_error",
                    None,
                ),
            )
        with self._mlock:
            content, finish = (
                self._malformed.pop(0) if self._malformed else (json.dumps(self.verdict), "stop")
            )
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
        return Reply(
            200,
            {
                "id": "chatcmpl-" + uuid.uuid4().hex[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_chars // 4,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": (prompt_chars + len(content)) // 4,
                },
            },
        )
