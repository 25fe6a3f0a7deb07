"""A stand-in model server for tests that stop a run at a known place: an OpenAI-compatible
chat endpoint on 127.0.0.1 answering from a list of replies in order, through the real
`openai` backend. It can hold one request unanswered, so a test knows the run is waiting on
that model call when it kills it; a held request uses up no reply, so the resumed run gets
the reply the killed one never saw. It notes when the client of the held request hangs up
(`hung_up`), as a server that aborts such a request (vLLM) would see it."""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REACHABLE_PROBE = "Say OK."  # what the CLI asks a server before a run (check_reachable)


class ChatStub:
    def __init__(
        self, replies: Sequence[str], hold_at: int | None = None, refuses: Sequence[str] = ()
    ) -> None:
        self.replies = list(replies)
        self.next = 0
        self.hold_at = hold_at  # the index of the reply whose request is held
        self.refuses = set(refuses)  # request fields answered with HTTP 400, as OpenAI's API does
        self.bodies: list[dict] = []  # every request, as sent
        self.held = threading.Event()  # set once that request has arrived
        self.release = threading.Event()
        self.hung_up = threading.Event()  # the client of the held request closed its connection
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.bodies.append(body)
                refused = sorted(stub.refuses & set(body))
                if refused:
                    message = f"Unrecognized request argument supplied: {', '.join(refused)}"
                    self.answer(
                        400, {"error": {"message": message, "type": "invalid_request_error"}}
                    )
                    return
                texts = stub.take(body)
                if texts is None:  # held until the test is done or the client hangs up
                    while not stub.release.wait(0.05):
                        if client_gone(self.connection):
                            stub.hung_up.set()
                            return
                    return
                if not texts:
                    self.send_error(500, "the chat stub ran out of replies")
                    return
                answer = {
                    "id": "stub",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                        for i, text in enumerate(texts)
                    ],
                    "usage": {
                        "prompt_tokens": 10,
                        "completion_tokens": sum(len(t.split()) for t in texts),
                        "total_tokens": 10 + sum(len(t.split()) for t in texts),
                    },
                }
                self.answer(200, answer)

            def answer(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def spec(self) -> str:
        return f"openai:stub@http://127.0.0.1:{self.server.server_port}/v1"

    def take(self, body: dict) -> list[str] | None:
        """The replies for one request (none left: an empty list), or None for the held one."""
        if body["messages"][-1]["content"] == REACHABLE_PROBE:
            return ["OK"]
        with self.lock:
            if self.next == self.hold_at and not self.held.is_set():
                self.held.set()
                return None
            n = body.get("n") or 1
            texts = self.replies[self.next : self.next + n]
            self.next += len(texts)
        return texts

    def __enter__(self) -> ChatStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def client_gone(connection: socket.socket) -> bool:
    """Whether the client closed its end: the socket reads as ended (or was reset)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
